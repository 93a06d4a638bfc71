// A complete questionnaire plugin: one short instrument, "bedtime-check",
// with validation, sum scoring, bands, a flag and one config setting.
// It is the worked example of plugins/sdk/README.md, not a clinical
// instrument.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ipsrt/plugin/plugin.h"

namespace {

namespace pv1 = ::ipsrt::plugin::v1;

constexpr char kId[] = "bedtime-check";
constexpr int kVersion = 1;

ipsrt::v1::Questionnaire Instrument() {
  ipsrt::v1::Questionnaire q;
  q.set_id(kId);
  q.set_version(kVersion);
  q.set_title("Bedtime regularity check (SDK example)");
  q.set_preamble("Think about the past week.");
  q.set_recall_period("P1W");
  auto add_item = [&](const char* id, const char* text,
                      std::initializer_list<const char*> labels) {
    ipsrt::v1::QuestionnaireItem* item = q.add_items();
    item->set_id(id);
    item->set_text(text);
    item->set_required(true);
    item->set_scored(true);
    int value = 0;
    for (const char* label : labels) {
      ipsrt::v1::AnswerOption* option = item->add_options();
      option->set_value(value++);
      option->set_label(label);
    }
  };
  add_item("bedtime",
           "On how many nights did you go to bed within 30 minutes of your "
           "usual time?",
           {"0-1 nights", "2-3 nights", "4-5 nights", "6-7 nights"});
  add_item("rested", "How rested did you feel on waking, most days?",
           {"Not at all", "A little", "Mostly", "Fully"});
  auto add_band = [&](int min, int max, const char* name) {
    ipsrt::v1::ScoreBand* band = q.add_bands();
    band->set_min(min);
    band->set_max(max);
    band->set_name(name);
  };
  add_band(0, 2, "irregular");
  add_band(3, 4, "somewhat_regular");
  add_band(5, 6, "regular");
  return q;
}

class BedtimeCheck final : public ipsrt::plugin::Plugin {
 public:
  BedtimeCheck() : instrument_(Instrument()) {}

  // One setting: `flag_at_or_below` (0-3, default 1): a bedtime answer at
  // or below it raises the flag "bedtime-check.irregular".
  absl::Status Configure(const pv1::ConfigureRequest& request) override {
    for (const auto& [key, value] : request.config().fields()) {
      if (key != "flag_at_or_below") {
        return absl::InvalidArgumentError(
            absl::StrCat("config.", key,
                         ": unknown setting (known: "
                         "flag_at_or_below)"));
      }
      if (!value.has_number_value() || value.number_value() < 0 ||
          value.number_value() > 3 ||
          value.number_value() != static_cast<int>(value.number_value())) {
        return absl::InvalidArgumentError(
            "config.flag_at_or_below: must be a whole number from 0 to 3");
      }
      flag_at_or_below_ = static_cast<int>(value.number_value());
    }
    return absl::OkStatus();
  }

  absl::StatusOr<pv1::DescribeResponse> Describe() override {
    pv1::DescribeResponse d;
    d.set_summary("SDK example: a two-item bedtime regularity check");
    return d;
  }

  absl::StatusOr<pv1::ListInstrumentsResponse> ListInstruments(
      const pv1::ListInstrumentsRequest&) override {
    pv1::ListInstrumentsResponse response;
    *response.add_instruments() = instrument_;
    return response;
  }

  absl::StatusOr<pv1::ScoreResponseResponse> ScoreResponse(
      const pv1::ScoreResponseRequest& request) override {
    const ipsrt::v1::QuestionnaireResponse& r = request.response();
    if (r.questionnaire_id() != kId) {
      return absl::NotFoundError(
          absl::StrCat("questionnaire_id: \"", r.questionnaire_id(),
                       "\" is not an instrument of this plugin"));
    }
    if (r.questionnaire_version() != 0 &&
        r.questionnaire_version() != kVersion) {
      return absl::InvalidArgumentError(absl::StrCat(
          "questionnaire_version: ", r.questionnaire_version(),
          " is not a version of ", kId, " (current: ", kVersion, ")"));
    }
    for (const auto& [item_id, value] : r.answers()) {
      const ipsrt::v1::QuestionnaireItem* item = Find(item_id);
      if (item == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("answers[\"", item_id, "\"]: not an item of ", kId));
      }
      if (value < 0 || value >= item->options_size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("answers[\"", item_id, "\"]: ", value,
                         " is not one of the answer values 0, 1, 2, 3"));
      }
    }
    pv1::ScoreResponseResponse scored;
    int total = 0;
    for (const ipsrt::v1::QuestionnaireItem& item : instrument_.items()) {
      auto it = r.answers().find(item.id());
      if (it == r.answers().end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("answers[\"", item.id(), "\"]: required"));
      }
      total += it->second;
      (*scored.mutable_scores())[absl::StrCat(kId, ".", item.id())] =
          it->second;
    }
    (*scored.mutable_scores())[absl::StrCat(kId, ".total")] = total;
    for (const ipsrt::v1::ScoreBand& band : instrument_.bands()) {
      if (total >= band.min() && total <= band.max()) {
        scored.set_band(band.name());
      }
    }
    if (r.answers().at("bedtime") <= flag_at_or_below_) {
      scored.add_flags(absl::StrCat(kId, ".irregular"));
    }
    return scored;
  }

 private:
  const ipsrt::v1::QuestionnaireItem* Find(const std::string& id) const {
    for (const auto& item : instrument_.items()) {
      if (item.id() == id) return &item;
    }
    return nullptr;
  }

  const ipsrt::v1::Questionnaire instrument_;
  int flag_at_or_below_ = 1;
};

}  // namespace

IPSRT_PLUGIN(BedtimeCheck, "bedtime-check", "1.0.0", IPSRT_KIND_QUESTIONNAIRE)
