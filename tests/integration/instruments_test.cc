// The built-in and the YAML instrument plugins, loaded as ipsrtd loads
// them (PluginRegistry: dlopen of the built library by bare name) and
// called through the QuestionnaireCatalog, the path every score takes.
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "core/questionnaires.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ipsrt/config.h"
#include "plugin_host/registry.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  return out.good();
}

PluginConfig Entry(const std::string& path, const std::string& transport,
                   const std::string& config_json = "") {
  PluginConfig c;
  c.path = path;
  c.transport = *ParsePluginTransport(transport);
  c.location = "ipsrtd.yaml:7:5";
  if (!config_json.empty()) c.config_json = config_json;
  return c;
}

PluginHostOptions Options() {
  PluginHostOptions o;
  o.plugin_dir = IPSRT_PLUGIN_DIR;
  o.runner_path = IPSRT_RUNNER_BIN;
  return o;
}

// The production example loads the instruments every shipped template
// asks for, through the same registry ipsrtd uses.
TEST(ProductionConfigTest, LoadsTheInstrumentPlugins) {
  absl::StatusOr<Config> config = LoadConfigFile(
      std::string(IPSRT_SOURCE_DIR) + "/config/ipsrtd.production.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_FALSE(config->plugins.empty());
  auto plugins = PluginRegistry::Load(config->plugins, Options());
  ASSERT_TRUE(plugins.ok()) << plugins.status();
  auto catalog = QuestionnaireCatalog::Build(**plugins);
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  for (const char* id : {"phq9", "gad7", "asrm"}) {
    EXPECT_TRUE((*catalog)->Get(id, 0).ok()) << id;
  }
}

class CoreInstrumentsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto plugins = PluginRegistry::Load(
        {Entry("libipsrt_core_instruments.so", GetParam())}, Options());
    ASSERT_TRUE(plugins.ok()) << plugins.status();
    plugins_ = *std::move(plugins);
    auto catalog = QuestionnaireCatalog::Build(*plugins_);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    catalog_ = *std::move(catalog);
  }

  // Scores answers given in item order "1".."N".
  absl::StatusOr<v1::ScoreResponseResponse> Score(
      const std::string& id, const std::vector<int>& answers) {
    v1::ScoreResponseRequest request;
    request.mutable_response()->set_questionnaire_id(id);
    for (size_t i = 0; i < answers.size(); ++i) {
      (*request.mutable_response()->mutable_answers())[absl::StrCat(i + 1)] =
          answers[i];
    }
    return catalog_->Score(request);
  }

  // Answers of `items` items, each at most `max`, that sum to `total`,
  // with the last item 0 (PHQ-9's item 9 stays negative).
  static std::vector<int> Summing(int total, int items, int max) {
    std::vector<int> out(items, 0);
    for (int i = 0; i < items - 1 && total > 0; ++i) {
      out[i] = std::min(max, total);
      total -= out[i];
    }
    out[items - 1] = total;  // only when the others are full
    return out;
  }

  std::unique_ptr<PluginRegistry> plugins_;
  std::unique_ptr<QuestionnaireCatalog> catalog_;
};

TEST_P(CoreInstrumentsTest, ListsTheFiveInstrumentsWithCodes) {
  std::vector<std::string> ids;
  for (const v1::Questionnaire* q : catalog_->List()) {
    ids.push_back(q->id());
    EXPECT_EQ(q->plugin(), "core-instruments");
  }
  EXPECT_THAT(ids, ElementsAre("asrm", "gad7", "phq9", "srm17", "srm5"));

  const v1::Questionnaire& phq9 = **catalog_->Get("phq9", 0);
  EXPECT_EQ(phq9.recall_period(), "P2W");
  EXPECT_EQ(phq9.panel_code().system(), "http://loinc.org");
  EXPECT_EQ(phq9.panel_code().code(), "44249-1");
  EXPECT_EQ(phq9.total_code().code(), "44261-6");
  ASSERT_EQ(phq9.items_size(), 10);
  EXPECT_EQ(phq9.items(8).code().code(), "44260-8");
  EXPECT_EQ(phq9.items(8).options_size(), 4);
  EXPECT_EQ(phq9.items(8).options(3).value(), 3);
  EXPECT_EQ(phq9.items(8).options(3).label(), "Nearly every day");
  EXPECT_FALSE(phq9.items(9).scored());
  EXPECT_FALSE(phq9.items(9).required());
  ASSERT_EQ(phq9.bands_size(), 5);
  EXPECT_EQ(phq9.bands(3).name(), "moderately_severe");

  const v1::Questionnaire& gad7 = **catalog_->Get("gad7", 0);
  EXPECT_EQ(gad7.panel_code().code(), "69737-5");
  EXPECT_EQ(gad7.total_code().code(), "70274-6");
  EXPECT_EQ(gad7.items_size(), 7);
  EXPECT_EQ(gad7.recall_period(), "P2W");

  const v1::Questionnaire& asrm = **catalog_->Get("asrm", 0);
  EXPECT_EQ(asrm.panel_code().system(), "urn:ipsrt:instruments");
  EXPECT_EQ(asrm.recall_period(), "P1W");
  EXPECT_EQ(asrm.items_size(), 5);
  EXPECT_EQ(asrm.items(0).options_size(), 5);
  EXPECT_EQ(asrm.bands_size(), 0);

  EXPECT_EQ((**catalog_->Get("srm5", 0)).items_size(), 5);
  EXPECT_EQ((**catalog_->Get("srm17", 0)).items_size(), 17);
}

TEST_P(CoreInstrumentsTest, Phq9BandBoundariesAndTotal) {
  const std::map<int, std::string> expected = {{0, "minimal"},
                                               {4, "minimal"},
                                               {5, "mild"},
                                               {9, "mild"},
                                               {10, "moderate"},
                                               {14, "moderate"},
                                               {15, "moderately_severe"},
                                               {19, "moderately_severe"},
                                               {20, "severe"},
                                               {27, "severe"}};
  for (const auto& [total, band] : expected) {
    auto scored = Score("phq9", Summing(total, 9, 3));
    ASSERT_TRUE(scored.ok()) << total << ": " << scored.status();
    EXPECT_EQ(scored->scores().at("phq9.total"), total);
    EXPECT_EQ(scored->band(), band) << total;
    EXPECT_EQ(scored->plugin(), "core-instruments");
  }
}

TEST_P(CoreInstrumentsTest, Gad7BandBoundaries) {
  const std::map<int, std::string> expected = {
      {0, "minimal"},   {4, "minimal"},   {5, "mild"},    {9, "mild"},
      {10, "moderate"}, {14, "moderate"}, {15, "severe"}, {21, "severe"}};
  for (const auto& [total, band] : expected) {
    auto scored = Score("gad7", Summing(total, 7, 3));
    ASSERT_TRUE(scored.ok()) << total << ": " << scored.status();
    EXPECT_EQ(scored->scores().at("gad7.total"), total);
    EXPECT_EQ(scored->band(), band) << total;
  }
}

TEST_P(CoreInstrumentsTest, AsrmFlagsAtSixAndAbove) {
  auto five = Score("asrm", {1, 1, 1, 1, 1});
  ASSERT_TRUE(five.ok()) << five.status();
  EXPECT_EQ(five->scores().at("asrm.total"), 5);
  EXPECT_EQ(five->band(), "");
  EXPECT_TRUE(five->flags().empty());
  auto six = Score("asrm", {2, 1, 1, 1, 1});
  ASSERT_TRUE(six.ok()) << six.status();
  EXPECT_EQ(six->scores().at("asrm.total"), 6);
  EXPECT_THAT(six->flags(), ElementsAre("asrm.at_or_above_6"));
  auto top = Score("asrm", {4, 4, 4, 4, 4});
  ASSERT_TRUE(top.ok()) << top.status();
  EXPECT_EQ(top->scores().at("asrm.total"), 20);
  EXPECT_THAT(Score("asrm", {5, 0, 0, 0, 0}).status(),
              absl::InvalidArgumentError(
                  "response.answers[\"1\"]: 5 is out of range 0-4"));
}

TEST_P(CoreInstrumentsTest, Phq9ItemNineAboveZeroIsASafetyFlag) {
  auto negative = Score("phq9", {3, 3, 3, 3, 3, 3, 3, 3, 0});
  ASSERT_TRUE(negative.ok());
  EXPECT_TRUE(negative->flags().empty());
  auto positive = Score("phq9", {0, 0, 0, 0, 0, 0, 0, 0, 1});
  ASSERT_TRUE(positive.ok());
  EXPECT_EQ(positive->scores().at("phq9.item9"), 1);
  EXPECT_EQ(positive->band(), "minimal");
  EXPECT_THAT(positive->flags(), ElementsAre("phq9.item9_positive"));
}

TEST_P(CoreInstrumentsTest, ResponsesThatDoNotFitNameTheItem) {
  EXPECT_EQ(Score("phq9", {0, 0, 0, 0, 0, 0, 0, 0, 4}).status(),
            absl::InvalidArgumentError(
                "response.answers[\"9\"]: 4 is out of range 0-3"));
  EXPECT_EQ(Score("phq9", {0, 0, 0, 0, 0, 0, 0, 0}).status(),
            absl::InvalidArgumentError("response.answers[\"9\"]: required "
                                       "item of phq9 is missing"));
  EXPECT_EQ(Score("gad7", {0, 0, 0, 0, 0, 0, 0, 0}).status(),
            absl::InvalidArgumentError(
                "response.answers[\"8\"]: gad7 has no item \"8\""));
  v1::ScoreResponseRequest v2;
  v2.mutable_response()->set_questionnaire_id("gad7");
  v2.mutable_response()->set_questionnaire_version(2);
  EXPECT_EQ(catalog_->Score(v2).status(),
            absl::InvalidArgumentError(
                "response.questionnaire_version: gad7 has version 1, not 2"));
  v1::ScoreResponseRequest unknown;
  unknown.mutable_response()->set_questionnaire_id("phq8");
  EXPECT_EQ(catalog_->Score(unknown).status(),
            absl::NotFoundError("response.questionnaire_id: questionnaire "
                                "\"phq8\" is not served by any loaded plugin"));
}

// A week of diary days: per activity, "HH:MM" Monday..Sunday ("" = not
// done), dates from `monday`.
v1::ScoreResponseRequest Week(
    const std::string& instrument, absl::CivilDay monday,
    const std::vector<std::pair<std::string, std::vector<std::string>>>&
        columns) {
  v1::ScoreResponseRequest r;
  r.mutable_response()->set_questionnaire_id(instrument);
  for (int d = 0; d < 7; ++d) {
    v1::SrmDiaryDay* day = r.add_days();
    day->set_local_date(absl::FormatCivilTime(monday + d));
    for (const auto& [activity, times] : columns) {
      if (times[d].empty()) continue;
      v1::SrmActivity* a = day->add_activities();
      a->set_activity(activity);
      a->set_local_time(times[d]);
    }
  }
  return r;
}

// docs/domain.md, worked example: score 26 / 5 = 5.2, ALI 34 (SRM-17: exercise
// is the activity done twice).
TEST_P(CoreInstrumentsTest, SrmWorkedExampleThroughThePlugin) {
  auto scored = catalog_->Score(Week(
      "srm17", absl::CivilDay(2026, 3, 2),
      {{"out_of_bed",
        {"07:00", "07:15", "06:50", "07:05", "09:30", "07:10", "07:00"}},
       {"first_contact",
        {"07:30", "08:00", "07:45", "07:40", "11:00", "07:50", ""}},
       {"start_work", {"09:00", "09:10", "08:55", "09:05", "09:00", "", ""}},
       {"dinner",
        {"18:30", "19:00", "18:45", "20:30", "18:40", "21:00", "19:00"}},
       {"to_bed",
        {"23:00", "23:15", "22:50", "23:30", "01:30", "00:45", "23:10"}},
       {"exercise", {"", "17:00", "", "", "", "10:00", ""}}}));
  ASSERT_TRUE(scored.ok()) << scored.status();
  const auto& s = scored->scores();
  EXPECT_DOUBLE_EQ(s.at("srm.score"), 5.2);
  EXPECT_EQ(s.at("srm.ali"), 34);
  EXPECT_EQ(s.at("srm.qualifying_activities"), 5);
  EXPECT_EQ(s.at("srm.hits"), 26);
  EXPECT_EQ(s.at("srm.out_of_bed.hits"), 6);
  EXPECT_EQ(s.at("srm.exercise.days"), 2);
  EXPECT_EQ(s.count("srm.exercise.habitual_minutes"), 0u);
  EXPECT_EQ(s.count("srm.to_bed.habitual_minutes"), 1u);
  EXPECT_EQ(scored->band(), "");
  EXPECT_TRUE(scored->flags().empty());
}

TEST_P(CoreInstrumentsTest, SrmEdgeCases) {
  // Bedtimes on both sides of midnight: one habit, 7 hits.
  auto midnight = catalog_->Score(Week(
      "srm5", absl::CivilDay(2026, 3, 2),
      {{"to_bed",
        {"23:40", "00:10", "23:50", "00:20", "23:55", "00:05", "00:00"}}}));
  ASSERT_TRUE(midnight.ok()) << midnight.status();
  EXPECT_DOUBLE_EQ(midnight->scores().at("srm.score"), 7.0);
  double ht = midnight->scores().at("srm.to_bed.habitual_minutes");
  EXPECT_TRUE(ht < 1.0 || ht > 1439.0) << ht;

  // Nothing done on 3 days: the score is absent, not 0.
  auto none = catalog_->Score(
      Week("srm5", absl::CivilDay(2026, 3, 2),
           {{"dinner", {"18:00", "", "19:00", "", "", "", ""}}}));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->scores().count("srm.score"), 0u);
  EXPECT_EQ(none->scores().at("srm.qualifying_activities"), 0);
  EXPECT_EQ(none->scores().at("srm.ali"), 2);

  // A week with the US change to daylight saving time (Sunday 2026-03-08):
  // diary times are local clock times, so 07:00 every day is 7 hits.
  auto dst = catalog_->Score(Week(
      "srm5", absl::CivilDay(2026, 3, 2),
      {{"out_of_bed",
        {"07:00", "07:00", "07:00", "07:00", "07:00", "07:00", "07:00"}}}));
  ASSERT_TRUE(dst.ok()) << dst.status();
  EXPECT_DOUBLE_EQ(dst->scores().at("srm.score"), 7.0);
  EXPECT_DOUBLE_EQ(dst->scores().at("srm.out_of_bed.habitual_minutes"), 420);
}

TEST_P(CoreInstrumentsTest, SrmDaysThatDoNotFitAreRefusedByPath) {
  auto week = Week("srm5", absl::CivilDay(2026, 3, 2),
                   {{"to_bed", {"23:00", "", "", "", "", "", ""}}});
  auto bad_time = week;
  bad_time.mutable_days(0)->mutable_activities(0)->set_local_time("24:10");
  EXPECT_EQ(catalog_->Score(bad_time).status(),
            absl::InvalidArgumentError("days[0].activities[0].local_time: "
                                       "must be HH:MM, or empty when not "
                                       "done"));
  auto unknown = week;
  unknown.mutable_days(0)->mutable_activities(0)->set_activity("exercise");
  EXPECT_EQ(catalog_->Score(unknown).status(),
            absl::InvalidArgumentError("days[0].activities[0].activity: srm5 "
                                       "has no activity \"exercise\""));
  auto eight = week;
  eight.add_days()->set_local_date("2026-03-09");
  EXPECT_EQ(catalog_->Score(eight).status(),
            absl::InvalidArgumentError("days: 8 days given; a week is at "
                                       "most 7"));
  auto span = week;
  span.mutable_days(6)->set_local_date("2026-03-09");
  EXPECT_EQ(catalog_->Score(span).status(),
            absl::InvalidArgumentError("days: from 2026-03-02 to 2026-03-09 "
                                       "is more than one 7-day window"));
  auto twice = week;
  twice.mutable_days(1)->set_local_date("2026-03-02");
  EXPECT_EQ(catalog_->Score(twice).status(),
            absl::InvalidArgumentError("days[1].local_date: 2026-03-02 is "
                                       "given twice"));
}

INSTANTIATE_TEST_SUITE_P(Transports, CoreInstrumentsTest,
                         ::testing::Values("in_process", "out_of_process"));

// ---- yaml-instruments

class YamlInstrumentsTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<PluginRegistry>> Load(const std::string& dir) {
    return PluginRegistry::Load(
        {Entry("libipsrt_yaml_instruments.so", "in_process",
               absl::StrCat(R"({"directories": [")", dir, R"("]})"))},
        Options());
  }
  testing::TempDir dir_;
};

TEST_F(YamlInstrumentsTest, ShippedExampleLoadsAndScores) {
  auto plugins = Load(std::string(IPSRT_SOURCE_DIR) + "/workflows/instruments");
  ASSERT_TRUE(plugins.ok()) << plugins.status();
  auto catalog = QuestionnaireCatalog::Build(**plugins);
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  const v1::Questionnaire& q = **(*catalog)->Get("routine-disruption", 0);
  EXPECT_EQ(q.plugin(), "yaml-instruments");
  EXPECT_EQ(q.items_size(), 5);
  EXPECT_EQ(q.items(1).options(3).label(), "5 or more nights");

  v1::ScoreResponseRequest r;
  r.mutable_response()->set_questionnaire_id("routine-disruption");
  auto& answers = *r.mutable_response()->mutable_answers();
  answers["1"] = 1;
  answers["2"] = 0;
  answers["3"] = 1;
  answers["4"] = 2;
  auto scored = (*catalog)->Score(r);
  ASSERT_TRUE(scored.ok()) << scored.status();
  EXPECT_EQ(scored->scores().at("routine-disruption.total"), 4);
  EXPECT_EQ(scored->scores().at("routine-disruption.item4"), 2);
  EXPECT_EQ(scored->band(), "somewhat_disrupted");
  EXPECT_THAT(scored->flags(), ElementsAre("routine-disruption.short_sleep"));

  answers["4"] = 0;
  answers["note"] = 1;
  scored = (*catalog)->Score(r);
  ASSERT_TRUE(scored.ok()) << scored.status();
  EXPECT_EQ(scored->scores().at("routine-disruption.total"), 2);
  EXPECT_EQ(scored->scores().count("routine-disruption.note"), 0u);
  EXPECT_EQ(scored->band(), "steady");
  EXPECT_THAT(scored->flags(), ElementsAre("routine-disruption.needs_review"));

  answers["4"] = 5;
  EXPECT_EQ((*catalog)->Score(r).status(),
            absl::InvalidArgumentError("response.answers[\"4\"]: 5 is not one "
                                       "of the answer values 0, 1, 2, 3"));
  answers["4"] = 0;
  answers.erase("2");
  EXPECT_EQ((*catalog)->Score(r).status(),
            absl::InvalidArgumentError("response.answers[\"2\"]: required "
                                       "item of routine-disruption is "
                                       "missing"));
}

TEST_F(YamlInstrumentsTest, ErrorsNameFileLineColumnAndNothingHalfLoads) {
  const std::string good = dir_.File("a-good.yaml");
  ASSERT_TRUE(WriteFile(good,
                        "id: good\n"
                        "version: 1\n"
                        "title: Good\n"
                        "items:\n"
                        "  - {id: \"1\", text: One, options: [{value: 0, "
                        "label: No}, {value: 1, label: Yes}]}\n"));
  const std::string bad = dir_.File("b-bad.yaml");
  ASSERT_TRUE(WriteFile(bad,
                        "id: bad\n"
                        "version: 1\n"
                        "title: Bad\n"
                        "items:\n"
                        "  - id: \"1\"\n"
                        "    text: One\n"
                        "    options:\n"
                        "      - {value: 0, label: No}\n"
                        "      - {value: 0, label: Yes}\n"
                        "bands:\n"
                        "  - {min: 0, max: 1, name: low}\n"
                        "  - {min: 1, max: 2, name: high}\n"
                        "flags:\n"
                        "  - name: positive\n"
                        "    when: item(\"1\") => 1\n"
                        "  - name: other\n"
                        "    when: item(\"2\") >= 1\n"
                        "colour: red\n"));
  auto plugins = Load(dir_.path());
  ASSERT_FALSE(plugins.ok());
  EXPECT_EQ(plugins.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      std::string(plugins.status().message()),
      absl::StrCat(
          "ipsrtd.yaml:7:5: plugin yaml-instruments refused its "
          "configuration: config.directories: instrument definitions "
          "refused:\n",
          bad,
          ":9:17: error: items[0].options[1].value: 0 is the value of "
          "an earlier option\n",
          bad, ":12:5: error: bands[1]: 1-2 overlaps band \"low\" (0-1)\n", bad,
          ":15:11: error: flags[0].when: unknown operator \"=>\" "
          "(expected >=, >, <=, <, == or !=)\n",
          bad,
          ":17:11: error: flags[1].when: item(\"2\"): bad has no item "
          "\"2\"\n",
          bad,
          ":18:1: error: colour: unknown key \"colour\" (allowed: id, "
          "version, title, preamble, recall_period, copyright, items, bands, "
          "flags)"));
}

// Instrument YAML goes through the same hardened reader as templates: a
// tagged value and a title in Latin-1 are located errors.
TEST_F(YamlInstrumentsTest, TagsAndBytesThatAreNotUtf8AreRefused) {
  const std::string tagged = dir_.File("a-tagged.yaml");
  ASSERT_TRUE(WriteFile(tagged,
                        "id: tagged\n"
                        "version: 1\n"
                        "title: !t Tagged\n"
                        "items:\n"
                        "  - {id: \"1\", text: One, options: [{value: 0, "
                        "label: No}, {value: 1, label: Yes}]}\n"));
  const std::string latin1 = dir_.File("b-latin1.yaml");
  ASSERT_TRUE(
      WriteFile(latin1, "id: latin1\nversion: 1\ntitle: Evaluaci\xedn\n"));
  auto plugins = Load(dir_.path());
  ASSERT_FALSE(plugins.ok());
  EXPECT_THAT(std::string(plugins.status().message()),
              HasSubstr(absl::StrCat(tagged,
                                     ":3:8: error: title: YAML tag \"!t\" is "
                                     "not allowed")));
  EXPECT_THAT(std::string(plugins.status().message()),
              HasSubstr(absl::StrCat(latin1,
                                     ":3:16: error: byte 0xED is not valid "
                                     "UTF-8")));
}

}  // namespace
}  // namespace ipsrt
