// End-to-end tests of bench/ipsrt_datagen, the generator of the scale
// benchmark's data sets: a set is built through the engine, marked
// complete only when finished, reused, removed by --clean, and an
// interrupted build leaves nothing behind.
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string kDatagen =
    absl::StrCat(IPSRT_BUILD_DIR, "/bench/ipsrt_datagen");

std::vector<std::string> DatagenArgs(const std::string& db, int n) {
  return {kDatagen, absl::StrCat("--store=sqlite:", db),
          absl::StrCat("--enrollments=", n),
          absl::StrCat("--workflows=", IPSRT_WORKFLOWS_DIR)};
}

std::string Describe(const ProcessResult& r) {
  return absl::StrCat("exit_code=", r.exit_code, " signal=", r.term_signal,
                      " timed_out=", r.timed_out, "\nstdout:\n", r.out,
                      "\nstderr:\n", r.err);
}

// Count is SELECT COUNT(*) FROM `table` in the database at `path`, or -1.
int64_t Count(const std::string& path, const std::string& table) {
  sqlite3* db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    sqlite3_stmt* s = nullptr;
    std::string sql = absl::StrCat("SELECT COUNT(*) FROM ", table);
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
      n = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return n;
}

// Entries lists the names in `dir` (empty when it does not exist).
std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    names.push_back(e.path().filename().string());
  }
  return names;
}

TEST(DatagenTest, BuildsASetMarksItCompleteReusesItAndCleansItAway) {
  TempDir tmp;
  const std::string dir = tmp.File("sets");
  const std::string db = dir + "/scale.db";

  absl::StatusOr<ProcessResult> built =
      RunProcess(DatagenArgs(db, 300), absl::Seconds(60));
  ASSERT_TRUE(built.ok()) << built.status();
  ASSERT_EQ(built->exit_code, 0) << Describe(*built);
  EXPECT_EQ(built->out, db + "\n");
  absl::StatusOr<std::string> marker = ReadFile(db + ".complete");
  ASSERT_TRUE(marker.ok()) << marker.status();
  EXPECT_EQ(*marker, "300\n");
  // Every enrollment went through the engine: its row, first event,
  // request record and audit record.
  EXPECT_EQ(Count(db, "enrollments"), 300);
  EXPECT_EQ(Count(db, "events"), 300);
  EXPECT_EQ(Count(db, "requests"), 300);
  EXPECT_EQ(Count(db, "audit"), 300);

  // A complete set of at least the size asked for is reused as it is,
  // while none of its reminders falls due within --reuse_horizon. The
  // first ones fall due at a local evening hour, so with the default hour
  // whether they are "soon" depends on the time of day the test runs (it
  // failed every day from 19:00 to 20:00 UTC): a horizon of 0 s makes
  // reuse certain (a set just built has nothing due yet), one of 48 h
  // makes a rebuild certain.
  std::vector<std::string> reuse_args = DatagenArgs(db, 200);
  reuse_args.push_back("--reuse_horizon=0s");
  absl::StatusOr<ProcessResult> again =
      RunProcess(reuse_args, absl::Seconds(60));
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->exit_code, 0) << Describe(*again);
  EXPECT_THAT(again->err, HasSubstr("reusing"));
  EXPECT_EQ(again->out, db + "\n");
  EXPECT_EQ(Count(db, "enrollments"), 300);

  std::vector<std::string> soon_args = DatagenArgs(db, 200);
  soon_args.push_back("--reuse_horizon=48h");
  absl::StatusOr<ProcessResult> anew = RunProcess(soon_args, absl::Seconds(60));
  ASSERT_TRUE(anew.ok()) << anew.status();
  ASSERT_EQ(anew->exit_code, 0) << Describe(*anew);
  EXPECT_THAT(anew->err, HasSubstr("has reminders falling due within 48h; "
                                   "building it anew"));
  EXPECT_EQ(anew->out, db + "\n");
  EXPECT_EQ(Count(db, "enrollments"), 200);

  std::vector<std::string> clean_args = DatagenArgs(db, 300);
  clean_args.push_back("--clean");
  absl::StatusOr<ProcessResult> cleaned =
      RunProcess(clean_args, absl::Seconds(30));
  ASSERT_TRUE(cleaned.ok()) << cleaned.status();
  ASSERT_EQ(cleaned->exit_code, 0) << Describe(*cleaned);
  EXPECT_THAT(cleaned->err, HasSubstr("removed"));
  EXPECT_FALSE(fs::exists(dir)) << "left: " << Entries(dir).size();
}

TEST(DatagenTest, AnInterruptedBuildRemovesItsPartialSet) {
  TempDir tmp;
  const std::string dir = tmp.File("sets");
  const std::string db = dir + "/scale.db";
  absl::StatusOr<std::unique_ptr<ChildProcess>> gen =
      ChildProcess::Spawn(DatagenArgs(db, 1000000), tmp.File("datagen.log"));
  ASSERT_TRUE(gen.ok()) << gen.status();

  // The database exists once the store is open, after the generator
  // handles SIGINT; wait until it holds committed enrollments.
  WaitFor(
      [&] {
        return (*gen)->Exited() ||
               (fs::exists(db) && Count(db, "enrollments") > 0);
      },
      absl::Seconds(60));
  ASSERT_GT(Count(db, "enrollments"), 0) << (*gen)->Log();

  (*gen)->Signal(SIGINT);
  std::optional<int> status = (*gen)->WaitForExit(absl::Seconds(60));
  ASSERT_TRUE(status.has_value()) << "still running after SIGINT";
  ASSERT_TRUE(WIFEXITED(*status)) << DescribeWaitStatus(*status);
  EXPECT_EQ(WEXITSTATUS(*status), 130) << (*gen)->Log();
  EXPECT_THAT((*gen)->Log(), HasSubstr("the partial set was removed"));
  // No database, WAL, shared memory or marker: nothing a later run could
  // take for a set.
  EXPECT_THAT(Entries(dir), IsEmpty());
}

}  // namespace
}  // namespace ipsrt::e2e
