// The malformed-template corpus (tests/workflows/corpus/*.yaml): each file
// holds one mistake a clinician could make and states, in header comment
// lines
//   # expect: LINE:COL: error: PATH: MESSAGE
// every diagnostic the loader must give for it, in order (the file name
// prefix of the loader's "file:line:col: error: ..." form is left out). This
// test runs the loader on every file and compares, so a changed message or
// position is caught, and checks that the shipped templates load cleanly.
//
// On a mismatch the failure message prints the actual diagnostics as
// "# expect:" lines; check their positions in the file before copying them.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/workflow.h"

namespace ipsrt {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kExpectPrefix = "# expect: ";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<fs::path> YamlFiles(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".yaml") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The corpus directory; IPSRT_WORKFLOW_CORPUS_DIR in the environment
// points the test at another directory (to try out new cases).
std::string CorpusDir() {
  const char* dir = std::getenv("IPSRT_WORKFLOW_CORPUS_DIR");
  return dir != nullptr && *dir != '\0' ? dir : IPSRT_WORKFLOW_CORPUS_DIR;
}

std::vector<fs::path> CorpusFiles() { return YamlFiles(CorpusDir()); }

// Expectations are the "# expect: " lines, in file order.
std::vector<std::string> Expectations(absl::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripSuffix(line, "\r");
    if (absl::ConsumePrefix(&line, kExpectPrefix)) {
      out.emplace_back(line);
    }
  }
  return out;
}

// Actual diagnostics as "line:col: error: path: message", checking that
// each names the file it was given.
std::vector<std::string> Actual(const std::vector<YamlDiagnostic>& diagnostics,
                                const std::string& file_name) {
  std::vector<std::string> out;
  for (const YamlDiagnostic& d : diagnostics) {
    std::string s = d.ToString();
    absl::string_view rest = s;
    EXPECT_TRUE(absl::ConsumePrefix(&rest, absl::StrCat(file_name, ":")))
        << "diagnostic does not start with the file name: " << s;
    out.emplace_back(rest);
  }
  return out;
}

std::string AsExpectLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) {
    absl::StrAppend(&out, "\n  ", kExpectPrefix, l);
  }
  return out.empty() ? "\n  (none)" : out;
}

class CorpusTest : public ::testing::TestWithParam<fs::path> {};

TEST_P(CorpusTest, GivesExactlyTheExpectedDiagnostics) {
  const fs::path& path = GetParam();
  const std::string text = ReadFile(path);
  const std::string file_name = path.filename().string();
  const std::vector<std::string> expected = Expectations(text);
  ASSERT_FALSE(expected.empty()) << path << " states no \"# expect:\" line";

  std::vector<std::string> actual =
      Actual(DiagnoseWorkflowTemplate(text, file_name), file_name);
  EXPECT_EQ(actual, expected)
      << path << "\nexpected:" << AsExpectLines(expected)
      << "\nactual:" << AsExpectLines(actual);

  // Every position lies inside the file, on a line that exists and at a
  // column no further than one past its end.
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  for (const YamlDiagnostic& d : DiagnoseWorkflowTemplate(text, file_name)) {
    ASSERT_GE(d.line, 1) << d.ToString();
    ASSERT_LE(d.line, static_cast<int>(lines.size())) << d.ToString();
    EXPECT_GE(d.column, 1) << d.ToString();
    EXPECT_LE(d.column, static_cast<int>(lines[d.line - 1].size()) + 1)
        << d.ToString();
  }
}

TEST_P(CorpusTest, ParseFailsWithTheSameDiagnostics) {
  const fs::path& path = GetParam();
  const std::string text = ReadFile(path);
  const std::string file_name = path.filename().string();
  absl::StatusOr<WorkflowTemplate> parsed =
      ParseWorkflowTemplate(text, file_name);
  ASSERT_FALSE(parsed.ok()) << path << " loaded, but it is malformed";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::string> with_file;
  for (const std::string& e : Expectations(text)) {
    with_file.push_back(absl::StrCat(file_name, ":", e));
  }
  EXPECT_EQ(std::string(parsed.status().message()),
            absl::StrJoin(with_file, "\n"));
}

std::string CaseName(const ::testing::TestParamInfo<fs::path>& info) {
  std::string name = info.param.stem().string();
  for (char& c : name) {
    if (!absl::ascii_isalnum(c)) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Corpus, CorpusTest, ::testing::ValuesIn(CorpusFiles()),
                         CaseName);

TEST(CorpusDirectoryTest, HoldsTheCorpus) {
  EXPECT_GE(CorpusFiles().size(), 15u) << CorpusDir();
}

TEST(ShippedTemplatesTest, GiveNoDiagnostics) {
  std::vector<fs::path> files = YamlFiles(IPSRT_WORKFLOWS_DIR);
  ASSERT_GE(files.size(), 2u) << IPSRT_WORKFLOWS_DIR;
  for (const fs::path& path : files) {
    SCOPED_TRACE(path.string());
    const std::string text = ReadFile(path);
    std::vector<std::string> actual =
        Actual(DiagnoseWorkflowTemplate(text, path.filename().string()),
               path.filename().string());
    EXPECT_THAT(actual, ::testing::IsEmpty()) << AsExpectLines(actual);
    absl::StatusOr<WorkflowTemplate> parsed =
        ParseWorkflowTemplate(text, path.filename().string());
    EXPECT_TRUE(parsed.ok()) << parsed.status();
  }
}

TEST(ShippedTemplatesTest, LoadTogetherAsACatalog) {
  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
      WorkflowCatalog::LoadDirectories({IPSRT_WORKFLOWS_DIR});
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  EXPECT_NE((*catalog)->Find("ipsrt-standard", 1), nullptr);
  EXPECT_NE((*catalog)->Find("ipsrt-preventive-first", 1), nullptr);
}

// The same format tables as tests/workflows/schema_check.mjs, so the JSON
// Schema's duration and HH:MM patterns and the loader agree.
TEST(FormatTablesTest, DurationsAgreeWithTheSchemaTable) {
  for (const char* ok :
       {"P1W", "P2W", "P1M", "P2M", "P10D", "P1Y2M", "P1M2W", "PT4H", "P1DT12H",
        "PT30M", "P1Y2M3W4DT5H6M7S", "P0W1D", "P10000D", "P007D", "PT1S"}) {
    EXPECT_TRUE(IsIsoDuration(ok)) << ok;
  }
  for (const char* bad :
       {"",      "P",     "1W",    "P0W",   "P0D",  "PT0H",
        "PW",    "P1",    "P1W1M", "P1H",   "P-1W", "bimonthly",
        "P1W1W", "PT",    "P1DT",  "P1.5W", "p1w",  "P10001D",
        "PT1D",  "P1T1H", " P1W",  "P1W "}) {
    EXPECT_FALSE(IsIsoDuration(bad)) << "\"" << bad << "\"";
  }
}

TEST(FormatTablesTest, LocalTimesAgreeWithTheSchemaTable) {
  for (const char* ok : {"00:00", "08:00", "20:00", "23:59"}) {
    EXPECT_TRUE(ParseLocalTimeOfDay(ok).has_value()) << ok;
  }
  for (const char* bad :
       {"24:00", "25:00", "8pm", "8:00", "20:60", "2000", "20:00:00", ""}) {
    EXPECT_FALSE(ParseLocalTimeOfDay(bad).has_value()) << "\"" << bad << "\"";
  }
}

}  // namespace
}  // namespace ipsrt
