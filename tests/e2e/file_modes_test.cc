// Files private by default: the built ipsrtd, started from a shell-like
// umask of 022, creates its database (and WAL and shared memory), the
// reminder JSONL file and bulk exports readable by its own account only
// (0600, directories 0700), because it sets server.umask (default 0077) at
// start-up. Checked by stat() of the real files.
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;

// The process's umask for the test's lifetime (inherited by ipsrtd).
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }

 private:
  mode_t old_;
};

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 0777;
}

// Starts ipsrtd with data, reminders and exports in directories it creates,
// plus `extra` server settings; enrolls one patient and bulk-exports.
void RunAndExport(const TempDir& dir, const std::string& server_extra) {
  const std::string config = dir.File("ipsrtd.yaml");
  ASSERT_TRUE(
      WriteFile(
          config,
          absl::StrCat("server:\n  listen: 127.0.0.1:50051\n", server_extra,
                       "store:\n  sqlite:\n    path: data/ipsrt.db\n"
                       "workflows:\n  directories:\n    - ",
                       IPSRT_WORKFLOWS_DIR,
                       "\nplugins:\n"
                       "  - path: libipsrt_core_instruments.so\n"
                       "  - path: ",
                       IPSRT_BUILD_DIR,
                       "/tests/plugins/libipsrt_test_exporter.so\n"
                       "reminders:\n  jsonl:\n"
                       "    path: reminders/out.jsonl\n"
                       "export:\n  root: exports\n"))
          .ok());
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  ProcessResult r =
      RunCli((*server)->address(),
             {"enroll", "--patient=Patient/1", "--workflow=ipsrt-standard",
              "--time_zone=Europe/London", "--clinician=Practitioner/1",
              "--request_id=e-1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunCli((*server)->address(), {"export", "bulk", "--output_dir=runs/one",
                                    "--format=test-resources"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The WAL and shared memory exist while ipsrtd runs.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    EXPECT_TRUE(std::filesystem::exists(dir.File("data/ipsrt.db") + suffix))
        << suffix;
  }
}

TEST(FileModesTest, EverythingIpsrtdCreatesIsPrivateByDefault) {
  ScopedUmask shell(022);
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(RunAndExport(dir, ""));
  std::vector<std::string> files = {"data/ipsrt.db", "data/ipsrt.db-wal",
                                    "data/ipsrt.db-shm", "reminders/out.jsonl",
                                    "exports/runs/one/manifest.json"};
  std::vector<std::string> dirs = {"data", "reminders", "exports",
                                   "exports/runs", "exports/runs/one"};
  int exported = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(
           dir.File("exports/runs/one"))) {
    if (entry.is_regular_file()) {
      files.push_back(std::filesystem::relative(entry.path(), dir.path()));
      ++exported;
    }
  }
  EXPECT_GE(exported, 2);  // manifest.json and the resources
  for (const std::string& f : files) {
    EXPECT_EQ(ModeOf(dir.File(f)), 0600) << f;
  }
  for (const std::string& d : dirs) {
    EXPECT_EQ(ModeOf(dir.File(d)), 0700) << d;
  }
}

TEST(FileModesTest, TheMaskIsConfigurable) {
  ScopedUmask shell(077);
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(RunAndExport(dir, "  umask: \"0027\"\n"));
  EXPECT_EQ(ModeOf(dir.File("exports/runs/one/manifest.json")), 0640);
  EXPECT_EQ(ModeOf(dir.File("exports/runs/one")), 0750);
  // The database stays 0600: the store creates it so whatever the mask.
  EXPECT_EQ(ModeOf(dir.File("data/ipsrt.db")), 0600);
}

}  // namespace
}  // namespace ipsrt::e2e
