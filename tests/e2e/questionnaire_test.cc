// End-to-end: the real ipsrtd loading the built core-instruments plugin by
// bare name (as config/ipsrtd.yaml does), and the CLI's questionnaire and
// score commands against it.
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
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

class QuestionnaireCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
        Ipsrtd::Start(WriteConfig(dir_));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  ProcessResult Cli(const std::vector<std::string>& args) {
    return RunCli(server_->address(), args);
  }
  std::string File(const std::string& name, const std::string& text) {
    std::string path = dir_.File(name);
    EXPECT_TRUE(WriteFile(path, text).ok());
    return path;
  }

  TempDir dir_;
  std::unique_ptr<Ipsrtd> server_;
};

TEST_F(QuestionnaireCliTest, ScorePhq9FromAnswersFile) {
  std::string answers =
      File("phq9.json",
           R"({"answers": {"1": 1, "2": 2, "3": 1, "4": 1, "5": 1, "6": 1, )"
           R"("7": 1, "8": 1, "9": 1}})");
  ProcessResult r = Cli({"score", "phq9", "--answers", answers});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out,
            "{\"instrument\":\"phq9\",\"scores\":{\"phq9.item1\":1,"
            "\"phq9.item2\":2,\"phq9.item3\":1,\"phq9.item4\":1,"
            "\"phq9.item5\":1,\"phq9.item6\":1,\"phq9.item7\":1,"
            "\"phq9.item8\":1,\"phq9.item9\":1,\"phq9.total\":10},"
            "\"band\":\"moderate\",\"flags\":[\"phq9.item9_positive\"]}\n");

  std::string bad = File("bad.json", R"({"answers": {"9": 4}})");
  r = Cli({"score", "phq9", "--answers", bad});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err,
              HasSubstr("error: INVALID_ARGUMENT: response.answers[\"9\"]"
                        ": 4 is out of range 0-3"));
  std::string typo = File("typo.json", R"({"answer": {"9": 1}})");
  r = Cli({"score", "phq9", "--answers", typo});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, absl::StrCat("error: INVALID_ARGUMENT: ", typo,
                                ": answer: unknown key (expected answers or "
                                "days)\n"));

  // The ITEM=VALUE form still works.
  r = Cli({"score", "gad7", "1=3", "2=3", "3=3", "4=3", "5=3", "6=0", "7=0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("gad7.total = 15\nband: severe\n"));
}

TEST_F(QuestionnaireCliTest, ScoreSrmWeekFromDiaryFile) {
  // The worked example of docs/domain.md (SRM-17: exercise is done twice).
  std::vector<std::vector<std::pair<std::string, std::string>>> days = {
      {{"out_of_bed", "07:00"},
       {"first_contact", "07:30"},
       {"start_work", "09:00"},
       {"dinner", "18:30"},
       {"to_bed", "23:00"}},
      {{"out_of_bed", "07:15"},
       {"first_contact", "08:00"},
       {"start_work", "09:10"},
       {"dinner", "19:00"},
       {"to_bed", "23:15"},
       {"exercise", "17:00"}},
      {{"out_of_bed", "06:50"},
       {"first_contact", "07:45"},
       {"start_work", "08:55"},
       {"dinner", "18:45"},
       {"to_bed", "22:50"}},
      {{"out_of_bed", "07:05"},
       {"first_contact", "07:40"},
       {"start_work", "09:05"},
       {"dinner", "20:30"},
       {"to_bed", "23:30"}},
      {{"out_of_bed", "09:30"},
       {"first_contact", "11:00"},
       {"start_work", "09:00"},
       {"dinner", "18:40"},
       {"to_bed", "01:30"}},
      {{"out_of_bed", "07:10"},
       {"first_contact", "07:50"},
       {"dinner", "21:00"},
       {"to_bed", "00:45"},
       {"exercise", "10:00"}},
      {{"out_of_bed", "07:00"}, {"dinner", "19:00"}, {"to_bed", "23:10"}}};
  std::string json = "{\"days\": [";
  for (size_t d = 0; d < days.size(); ++d) {
    absl::StrAppend(&json, d ? ", " : "", "{\"date\": \"2026-03-0", d + 2,
                    "\", \"activities\": {");
    for (size_t a = 0; a < days[d].size(); ++a) {
      absl::StrAppend(&json, a ? ", " : "", "\"", days[d][a].first, "\": \"",
                      days[d][a].second, "\"");
    }
    absl::StrAppend(&json, "}}");
  }
  absl::StrAppend(&json, "]}");
  ProcessResult r =
      Cli({"score", "srm17", "--answers", File("week.json", json)});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("{\"instrument\":\"srm17\",\"score\":5.2,"
                               "\"qualifying_activities\":5,\"hits\":26,"
                               "\"ali\":34,\"activities\":{"));
  EXPECT_THAT(r.out, HasSubstr("\"exercise\":{\"days\":2,\"hits\":0}"));
  EXPECT_THAT(r.out, HasSubstr("\"start_work\":{\"days\":5,\"hits\":5,"
                               "\"habitual_time\":\"09:02\"}"));

  // Nothing qualifies: the score is null, not 0.
  r = Cli(
      {"score", "srm5", "--answers",
       File("sparse.json", R"({"days": [{"date": "2026-03-02", "activities": )"
                           R"({"dinner": "18:00"}}]})")});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"score\":null,\"qualifying_activities\":0,"
                               "\"hits\":0,\"ali\":1"));
}

TEST_F(QuestionnaireCliTest, ShowAsJsonHasItemsOptionsAndCodes) {
  ProcessResult r = Cli({"questionnaire", "show", "phq9", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"id\":\"phq9\""));
  EXPECT_THAT(r.out, HasSubstr("\"code\":\"44249-1\""));
  EXPECT_THAT(r.out, HasSubstr("\"code\":\"44260-8\""));
  EXPECT_THAT(r.out, HasSubstr("\"label\":\"Nearly every day\""));
  EXPECT_THAT(r.out, HasSubstr("\"plugin\":\"core-instruments\""));
  r = Cli({"questionnaire", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* id : {"asrm", "gad7", "phq9", "srm17", "srm5"}) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat(id, " "))) << id;
  }
}

// A clinician-defined instrument with an error never half-loads: ipsrtd
// refuses to start, naming the plugin entry and the file:line:col.
TEST(YamlInstrumentsStartTest, BrokenDefinitionStopsIpsrtd) {
  TempDir dir;
  std::string instruments = dir.File("instruments");
  ASSERT_EQ(std::system(absl::StrCat("mkdir -p ", instruments).c_str()), 0);
  ASSERT_TRUE(WriteFile(absl::StrCat(instruments, "/sleep.yaml"),
                        "id: sleep\n"
                        "version: 1\n"
                        "title: Sleep\n"
                        "items:\n"
                        "  - {id: \"1\", text: Slept well, options: "
                        "[{value: 0, label: No}, {value: 1, label: Yes}]}\n"
                        "flags:\n"
                        "  - {name: poor, when: total => 1}\n")
                  .ok());
  std::string config = WriteConfig(dir);
  std::ifstream in(config);
  std::stringstream text;
  text << in.rdbuf();
  ASSERT_TRUE(
      WriteFile(config, absl::StrCat(text.str(),
                                     "  - path: libipsrt_yaml_instruments.so\n"
                                     "    config:\n"
                                     "      directories: [instruments]\n"))
          .ok());
  auto server = Ipsrtd::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr(absl::StrCat(
                  "ipsrtd: plugin refused: ", config,
                  ":17:5: plugin yaml-instruments refused its configuration: "
                  "config.directories: instrument definitions refused:\n",
                  instruments,
                  "/sleep.yaml:7:24: error: flags[0].when: unknown "
                  "operator \"=>\" (expected >=, >, <=, <, == or !=)")));
}

}  // namespace
}  // namespace ipsrt::e2e
