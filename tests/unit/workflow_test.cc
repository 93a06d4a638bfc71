#include "model/workflow.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/chain_template.h"

namespace ipsrt {
namespace {

using ::testing::HasSubstr;

TEST(WorkflowTest, ShippedStandardTemplateHasTheFourStagesInOrder) {
  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
      WorkflowCatalog::LoadDirectories(
          {std::string(IPSRT_SOURCE_DIR) + "/workflows"});
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const WorkflowTemplate* t = (*catalog)->Find("ipsrt-standard", 0);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->version, 1);
  std::vector<std::string> stages, cadences;
  for (const StageTemplate& s : t->stages) {
    stages.push_back(s.id);
    cadences.push_back(s.session_cadence);
  }
  EXPECT_THAT(stages, ::testing::ElementsAre("initial", "intermediate", "final",
                                             "maintenance"));
  EXPECT_THAT(cadences, ::testing::ElementsAre("P1W", "P1W", "P1W", "P2W"));
  EXPECT_EQ(t->source_sha256.size(), 64u);
}

TEST(WorkflowTest, IsoDurations) {
  for (const char* ok : {"P1W", "P2W", "P1M", "P2M", "P10D", "P1Y2M", "P1M2W",
                         "PT4H", "P1DT12H", "PT30M"}) {
    EXPECT_TRUE(IsIsoDuration(ok)) << ok;
  }
  for (const char* bad : {"", "P", "1W", "P0W", "PW", "P1", "P1W1M", "P1H",
                          "P-1W", "bimonthly", "P1W1W", "PT", "P1DT"}) {
    EXPECT_FALSE(IsIsoDuration(bad)) << bad;
  }
}

TEST(WorkflowTest, EveryProblemLocated) {
  absl::StatusOr<WorkflowTemplate> t = ParseWorkflowTemplate(R"(id: demo
version: 1
title: Demo
stages:
  - id: a
    title: A
    cadense: P1W
  - id: a
    title: A again
    cadence: bimonthly
)",
                                                             "demo.yaml");
  ASSERT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  std::string m(t.status().message());
  EXPECT_THAT(m, HasSubstr("demo.yaml:7:5: error: stages[0].cadense: unknown "
                           "key \"cadense\" (allowed: id, title, description, "
                           "cadence, tasks, exit, rules, open_ended)"));
  EXPECT_THAT(m, HasSubstr("demo.yaml:5:5: error: stages[0].cadence: is "
                           "required"));
  EXPECT_THAT(m, HasSubstr("demo.yaml:8:5: error: stages[1].id: duplicate "
                           "stage id \"a\" (first at stages[0].id)"));
  EXPECT_THAT(m, HasSubstr("demo.yaml:10:14: error: stages[1].cadence: "
                           "\"bimonthly\" is not a positive ISO-8601 "
                           "duration"));
}

// Reminder and cadence values: a local time that is not HH:MM and a
// cadence that is not a positive ISO-8601 duration are refused at template
// load, each at its file:line:col and path.
TEST(WorkflowTest, ReminderTimesAndCadencesLocated) {
  absl::StatusOr<WorkflowTemplate> t = ParseWorkflowTemplate(R"(id: demo
version: 1
title: Demo
stages:
  - id: a
    title: A
    cadence: P0D
    tasks:
      - id: diary
        kind: questionnaire
        questionnaire: srm5
        title: Diary
        repeat: P1D
        remind_at: "8pm"
      - id: late
        kind: questionnaire
        questionnaire: phq9
        title: Late
        repeat: P1W
        remind_at: "24:00"
)",
                                                             "demo.yaml");
  ASSERT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.status().message(),
            "demo.yaml:7:14: error: stages[0].cadence: \"P0D\" is not a "
            "positive ISO-8601 duration such as P1W, P2W, P1M or PT4H\n"
            "demo.yaml:14:20: error: stages[0].tasks[0].remind_at: \"8pm\" is "
            "not a local time HH:MM between 00:00 and 23:59\n"
            "demo.yaml:20:20: error: stages[0].tasks[1].remind_at: \"24:00\" "
            "is not a local time HH:MM between 00:00 and 23:59");
}

TEST(WorkflowTest, CatalogRefusesDuplicatesAndFindsNewest) {
  auto parse = [](int version) {
    return *ParseWorkflowTemplate(
        "id: w\nversion: " + std::to_string(version) +
            "\ntitle: W\nstages:\n  - {id: s, title: S, cadence: P1W}\n",
        "w" + std::to_string(version) + ".yaml");
  };
  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> c =
      WorkflowCatalog::FromTemplates({parse(1), parse(3), parse(2)});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->Find("w", 0)->version, 3);
  EXPECT_EQ((*c)->Find("w", 2)->version, 2);
  EXPECT_EQ((*c)->Find("w", 4), nullptr);
  EXPECT_EQ((*c)->Find("x", 0), nullptr);

  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> dup =
      WorkflowCatalog::FromTemplates({parse(1), parse(1)});
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dup.status().message(),
            "w1.yaml:1:1: error: id: workflow w@1 is already defined in "
            "w1.yaml");
}

}  // namespace
}  // namespace ipsrt

namespace ipsrt {
namespace {

TEST(WorkflowLimitsTest, TheLargestAllowedTemplateLoadsAndIndexesItsIds) {
  absl::StatusOr<WorkflowTemplate> t =
      ParseWorkflowTemplate(testing::ChainTemplate(1000), "chain.yaml");
  ASSERT_TRUE(t.ok()) << t.status().message().substr(0, 500);
  EXPECT_EQ(t->stages.size(), 1000u);
  EXPECT_EQ(t->StageIndex("s999"), 999);
  EXPECT_EQ(t->StageIndex("s1000"), -1);
  ASSERT_NE(t->FindTask("s500", "t500"), nullptr);
  EXPECT_EQ(t->FindTask("s500", "t500")->id, "t500");
  EXPECT_EQ(t->FindTask("s500", "t501"), nullptr);
  EXPECT_TRUE(t->HasTask("t42"));
  EXPECT_FALSE(t->HasTask("t1000"));
}

TEST(WorkflowLimitsTest, StagesTasksAndConditionsPastTheLimitsAreRefused) {
  std::vector<YamlDiagnostic> d =
      DiagnoseWorkflowTemplate(testing::ChainTemplate(1001), "big.yaml");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].ToString(),
            "big.yaml:5:3: error: stages: 1001 stages; the limit is 1000");

  // 50,000 stages (9 MB; issue #14 measured 17 s and 568 MB to validate
  // 52,000): refused by the file size before anything is parsed.
  const std::string huge = testing::ChainTemplate(50000);
  d = DiagnoseWorkflowTemplate(huge, "huge.yaml");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].ToString(),
            absl::StrCat("huge.yaml:1:1: error: the file is ", huge.size(),
                         " bytes; the limit is 1048576 bytes"));

  WorkflowLimits limits;
  limits.max_tasks = 10;
  d = DiagnoseWorkflowTemplate(testing::ChainTemplate(20), "tasks.yaml",
                               ModelContext(), limits);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_THAT(d[0].ToString(),
              HasSubstr("error: stages[10].tasks[0]: more than 10 tasks in "
                        "the template (the limit)"));

  limits = WorkflowLimits();
  limits.max_condition_chars = 10;
  d = DiagnoseWorkflowTemplate(testing::ChainTemplate(2), "cond.yaml",
                               ModelContext(), limits);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_THAT(d[0].ToString(),
              HasSubstr("stages[0].exit[0].when: the condition is 16 "
                        "characters; the limit is 10"));
}

TEST(WorkflowLimitsTest, ANonMapFileNamesWhatIsMissing) {
  std::vector<std::string> got;
  for (const YamlDiagnostic& d :
       DiagnoseWorkflowTemplate("- a\n- b\n", "list.yaml")) {
    got.push_back(d.ToString());
  }
  EXPECT_THAT(got,
              ::testing::ElementsAre(
                  "list.yaml:1:1: error: a template is a map with id, "
                  "version, title and stages",
                  "list.yaml:1:1: error: id: is required",
                  "list.yaml:1:1: error: version: is required",
                  "list.yaml:1:1: error: title: is required",
                  "list.yaml:1:1: error: stages: must be a non-empty list of "
                  "stages"));
}

}  // namespace
}  // namespace ipsrt
