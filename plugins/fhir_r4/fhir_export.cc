#include "fhir_export.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "ipsrt/plugin/hash.h"
#include "ipsrt/plugin/time.h"
#include "json.h"

namespace ipsrt::fhir {
namespace {

namespace pv1 = ::ipsrt::plugin::v1;
namespace v1 = ::ipsrt::v1;

constexpr char kObservationCategory[] =
    "http://terminology.hl7.org/CodeSystem/observation-category";
constexpr char kScreeningAssessmentProfile[] =
    "http://hl7.org/fhir/us/core/StructureDefinition/"
    "us-core-observation-screening-assessment";
constexpr char kUcum[] = "http://unitsofmeasure.org";
constexpr char kLocalInstruments[] = "urn:ipsrt:instruments";
constexpr char kLocalStages[] = "urn:ipsrt:stages";
constexpr char kLocalBands[] = "urn:ipsrt:bands";
constexpr char kLocalAlerts[] = "urn:ipsrt:alerts";
constexpr char kLocalCarePlanCategory[] = "urn:ipsrt:care-plan-category";
constexpr char kLocalProblemAreas[] = "urn:ipsrt:problem-areas";
constexpr char kLocalEncounterType[] = "urn:ipsrt:encounter-types";
constexpr char kActorSystem[] = "urn:ipsrt:actor";

enum class Form { kCollection, kTransaction, kResources };

// One rendered resource. `key` is its stable identifier value (the
// enrollment's name and where in the log it comes from); its id and
// urn:uuid derive from it.
struct Resource {
  std::string type;
  std::string key;
  Json body;
};

// FHIR instant / dateTime in UTC, fractional seconds only when present.
std::string Instant(absl::Time t) { return Rfc3339Utc(t); }
std::string Instant(const google::protobuf::Timestamp& ts) {
  return Rfc3339Utc(FromProtoTime(ts));
}

Json Coding(absl::string_view system, absl::string_view code,
            absl::string_view display = "") {
  Json c = Json::Object();
  c.Set("system", std::string(system)).Set("code", std::string(code));
  if (!display.empty()) c.Set("display", std::string(display));
  return c;
}

Json Concept(Json coding, absl::string_view text = "") {
  Json c = Json::Object();
  c.Set("coding", std::move(Json::Array().Add(std::move(coding))));
  if (!text.empty()) c.Set("text", std::string(text));
  return c;
}

Json ConceptOf(const v1::Coding& coding) {
  return Concept(Coding(coding.system(), coding.code(), coding.display()),
                 coding.display());
}

Json Quantity(double value, absl::string_view unit) {
  Json q = Json::Object();
  q.Set("value", Json::Decimal(value))
      .Set("unit", std::string(unit))
      .Set("system", kUcum)
      .Set("code", std::string(unit));
  return q;
}

Json One(Json value) { return std::move(Json::Array().Add(std::move(value))); }

// Characters a query value may carry unescaped in ifNoneExist.
std::string QueryEscape(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' ||
        c == '~' || c == ':' || c == '/') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// A literal reference when `ref` already is one ("Patient/123"), else a
// logical reference by identifier (an MRN or another local id).
Json ExternalReference(absl::string_view ref,
                       const std::vector<std::string>& types,
                       absl::string_view identifier_system) {
  for (const std::string& type : types) {
    absl::string_view id = ref;
    if (absl::ConsumePrefix(&id, type + "/") && !id.empty() &&
        id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
          return absl::ascii_isalnum(c) || c == '-' || c == '.';
        })) {
      Json r = Json::Object();
      r.Set("reference", std::string(ref));
      return r;
    }
  }
  Json identifier = Json::Object();
  identifier.Set("system", std::string(identifier_system))
      .Set("value", std::string(ref));
  Json r = Json::Object();
  r.Set("type", types.front()).Set("identifier", std::move(identifier));
  return r;
}

// Orders item ids "2" before "10"; non-numeric ids after, by text.
bool ItemIdLess(const std::string& a, const std::string& b) {
  int na = 0, nb = 0;
  bool a_num = absl::SimpleAtoi(a, &na), b_num = absl::SimpleAtoi(b, &nb);
  if (a_num != b_num) return a_num;
  if (a_num && na != nb) return na < nb;
  return a < b;
}

// ItemsById indexes an instrument's items by id (empty without one).
using ItemsById = std::map<std::string, const v1::QuestionnaireItem*>;

ItemsById ItemsOf(const v1::Questionnaire* instrument) {
  ItemsById items;
  if (instrument == nullptr) return items;
  for (const v1::QuestionnaireItem& item : instrument->items()) {
    items[item.id()] = &item;
  }
  return items;
}

// AnsweredItemIds lists the answered items: in the instrument's order,
// then any others by id (ItemIdLess).
std::vector<std::string> AnsweredItemIds(const v1::QuestionnaireResponse& qr,
                                         const v1::Questionnaire* instrument,
                                         const ItemsById& item_by_id) {
  std::vector<std::string> ids;
  if (instrument != nullptr) {
    for (const v1::QuestionnaireItem& item : instrument->items()) {
      if (qr.answers().contains(item.id())) ids.push_back(item.id());
    }
  }
  std::vector<std::string> others;
  for (const auto& [item_id, value] : qr.answers()) {
    if (!item_by_id.contains(item_id)) others.push_back(item_id);
  }
  std::sort(others.begin(), others.end(), ItemIdLess);
  ids.insert(ids.end(), others.begin(), others.end());
  return ids;
}

// ResponseItems is a QuestionnaireResponse's item list: each answered item
// (`ids`) with its text from the instrument, when known, and its answer.
Json ResponseItems(const v1::QuestionnaireResponse& qr,
                   const std::vector<std::string>& ids,
                   const ItemsById& item_by_id) {
  Json items = Json::Array();
  for (const std::string& item_id : ids) {
    Json item = Json::Object();
    item.Set("linkId", item_id);
    auto it = item_by_id.find(item_id);
    if (it != item_by_id.end() && !it->second->text().empty()) {
      item.Set("text", it->second->text());
    }
    Json answer = Json::Object();
    answer.Set("valueInteger", Json::Int(qr.answers().at(item_id)));
    item.Set("answer", One(std::move(answer)));
    items.Add(std::move(item));
  }
  return items;
}

// ReportedScore is one score of a response with the code its Observation
// carries, and its place in the report's order.
struct ReportedScore {
  std::tuple<int, int, std::string> order;
  std::string name;
  double value;
  Json code;
};

// ReportedScores orders a response's scores for their Observations: the
// total (the instrument's total code, else a local code), the items with
// a code in the instrument's order, then any other score by name (local
// codes).
std::vector<ReportedScore> ReportedScores(const v1::Event& event,
                                          const std::string& id,
                                          const v1::Questionnaire* instrument,
                                          const ItemsById& item_by_id) {
  std::vector<ReportedScore> scores;
  const std::string total_name = absl::StrCat(id, ".total");
  const std::string item_prefix = absl::StrCat(id, ".item");
  for (const auto& [name, value] : event.scores()) {
    absl::string_view item_id = name;
    if (name == total_name) {
      Json code =
          instrument != nullptr && !instrument->total_code().code().empty()
              ? ConceptOf(instrument->total_code())
              : Concept(Coding(kLocalInstruments, name), name);
      scores.push_back(
          ReportedScore{{0, 0, name}, name, value, std::move(code)});
    } else if (absl::ConsumePrefix(&item_id, item_prefix) &&
               item_by_id.contains(std::string(item_id)) &&
               !item_by_id.at(std::string(item_id))->code().code().empty()) {
      const v1::QuestionnaireItem& item = *item_by_id.at(std::string(item_id));
      int position = 0;
      for (; position < instrument->items_size(); ++position) {
        if (instrument->items(position).id() == item.id()) break;
      }
      scores.push_back(ReportedScore{
          {1, position, name}, name, value, ConceptOf(item.code())});
    } else {
      scores.push_back(
          ReportedScore{{2, 0, name},
                        name,
                        value,
                        Concept(Coding(kLocalInstruments, name), name)});
    }
  }
  std::sort(scores.begin(), scores.end(),
            [](const ReportedScore& a, const ReportedScore& b) {
              return a.order < b.order;
            });
  return scores;
}

class Renderer {
 public:
  Renderer(const FhirExportOptions& options,
           const pv1::RenderExportRequest& request, Form form)
      : o_(options), r_(request), e_(request.enrollment()), form_(form) {}

  std::vector<Resource> Render();

 private:
  struct StageSpan {
    std::string stage;
    absl::Time start;
    std::optional<absl::Time> end;
    std::vector<std::string> encounter_keys;
  };
  struct Acknowledgement {
    absl::Time time;
    int64_t sequence;
  };

  std::string Key(absl::string_view suffix) const {
    return absl::StrCat(e_.name(), "/", suffix);
  }
  static std::string EventKey(const v1::Event& event,
                              absl::string_view suffix) {
    return absl::StrCat("events/", event.sequence(), "/", suffix);
  }
  Json Ref(absl::string_view type, absl::string_view suffix) const;
  // resourceType, id (not in a transaction: the server assigns it), meta,
  // identifier.
  Json Start(absl::string_view type, absl::string_view suffix,
             bool screening_profile = false) const;
  Json Subject() const {
    return ExternalReference(e_.patient_ref(), {"Patient"},
                             o_.patient_identifier_system);
  }
  std::optional<Json> Clinician() const {
    if (e_.clinician_ref().empty()) return std::nullopt;
    return ExternalReference(e_.clinician_ref(),
                             {"Practitioner", "PractitionerRole"},
                             o_.practitioner_identifier_system);
  }
  bool LiteralPatient() const {
    return absl::StartsWith(e_.patient_ref(), "Patient/");
  }
  const v1::Questionnaire* Instrument(const std::string& id, int version) const;
  std::string QuestionnaireCanonical(const std::string& id, int version) const;

  void Scan();
  void Add(std::string type, std::string suffix, Json body,
           std::vector<std::pair<std::string, std::string>>* targets);
  void CarePlan();
  void QuestionnaireResponse(
      const v1::Event& event,
      std::vector<std::pair<std::string, std::string>>* targets);
  // ScorePanel is the instrument's panel Observation grouping the score
  // Observations `member_suffixes` of a response.
  Json ScorePanel(const v1::Event& event, const std::string& panel_suffix,
                  const v1::Questionnaire& instrument,
                  const std::vector<std::string>& member_suffixes,
                  const std::string& authored,
                  const std::string& response_suffix) const;
  // DiaryDay returns the response suffix of the earlier entry a
  // correction replaces, if any.
  std::optional<std::string> DiaryDay(
      const v1::Event& event,
      std::vector<std::pair<std::string, std::string>>* targets);
  // SurveyObservation starts a final survey Observation of the patient
  // recorded by `event`: based on the care plan, with `code`, `effective`
  // (a FHIR dateTime: an instant, or a date) and the time of recording.
  Json SurveyObservation(const v1::Event& event, const std::string& suffix,
                         Json code, const std::string& effective) const;
  // `effective` is a FHIR dateTime: an instant, or a date.
  Json ScoreObservation(const v1::Event& event, const std::string& suffix,
                        Json code, double value, absl::string_view unit,
                        const std::string& response_suffix,
                        const std::string& effective,
                        const std::string& band) const;
  void Encounter(const v1::Event& event,
                 std::vector<std::pair<std::string, std::string>>* targets);
  void Goal(const v1::Event& event,
            std::vector<std::pair<std::string, std::string>>* targets);
  void RelapsePlan(const v1::Event& event,
                   std::vector<std::pair<std::string, std::string>>* targets);
  void DisruptionPlan(
      const v1::Event& event,
      std::vector<std::pair<std::string, std::string>>* targets);
  void Flag(const v1::Event& event, const v1::Outcome& raised,
            std::vector<std::pair<std::string, std::string>>* targets);
  // `revised`: the response suffix a correction replaces (an entity of
  // role revision).
  void Provenance(
      const v1::Event& event, bool update,
      const std::vector<std::pair<std::string, std::string>>& targets,
      const std::optional<std::string>& revised = std::nullopt);

  const FhirExportOptions& o_;
  const pv1::RenderExportRequest& r_;
  const v1::Enrollment& e_;
  Form form_;
  absl::TimeZone zone_ = absl::UTCTimeZone();

  std::vector<StageSpan> stages_;
  std::vector<std::string> goal_suffixes_;
  std::map<std::string, Acknowledgement> acknowledgements_;
  std::map<std::string, std::string> flag_suffix_by_alert_;
  // Local date -> response suffix of the latest diary entry for that day.
  std::map<std::string, std::string> diary_by_date_;
  std::vector<Resource> out_;
};

Json Renderer::Ref(absl::string_view type, absl::string_view suffix) const {
  std::string uuid = StableUuid(Key(suffix));
  Json r = Json::Object();
  r.Set("reference", form_ == Form::kResources
                         ? absl::StrCat(type, "/", uuid)
                         : absl::StrCat("urn:uuid:", uuid));
  return r;
}

Json Renderer::Start(absl::string_view type, absl::string_view suffix,
                     bool screening_profile) const {
  Json resource = Json::Object();
  resource.Set("resourceType", std::string(type));
  if (form_ != Form::kTransaction) {
    resource.Set("id", StableUuid(Key(suffix)));
  }
  Json identifier = Json::Object();
  identifier.Set("system", o_.identifier_system).Set("value", Key(suffix));
  if (type == "Provenance") {
    // R4 Provenance has no identifier element: the stable key travels as a
    // tag, which the transaction's ifNoneExist searches with _tag.
    Json meta = Json::Object();
    meta.Set("tag", One(Coding(o_.identifier_system, Key(suffix))));
    resource.Set("meta", std::move(meta));
    return resource;
  }
  if (screening_profile) {
    Json meta = Json::Object();
    meta.Set("profile", One(kScreeningAssessmentProfile));
    resource.Set("meta", std::move(meta));
  }
  if (type == "QuestionnaireResponse") {
    resource.Set("identifier", std::move(identifier));  // 0..1 in R4
  } else {
    resource.Set("identifier", One(std::move(identifier)));
  }
  return resource;
}

const v1::Questionnaire* Renderer::Instrument(const std::string& id,
                                              int version) const {
  const v1::Questionnaire* best = nullptr;
  for (const v1::Questionnaire& q : r_.instruments()) {
    if (q.id() != id) continue;
    if (version > 0 && q.version() == version) return &q;
    if (version <= 0 && (best == nullptr || q.version() > best->version())) {
      best = &q;
    }
  }
  return best;
}

std::string Renderer::QuestionnaireCanonical(const std::string& id,
                                             int version) const {
  if (version <= 0) {
    const v1::Questionnaire* q = Instrument(id, 0);
    if (q != nullptr) version = q->version();
  }
  std::string url = absl::StrCat(o_.canonical_base, "/Questionnaire/", id);
  if (version > 0) absl::StrAppend(&url, "|", version);
  return url;
}

void Renderer::Add(std::string type, std::string suffix, Json body,
                   std::vector<std::pair<std::string, std::string>>* targets) {
  if (targets != nullptr) targets->emplace_back(type, suffix);
  out_.push_back(Resource{std::move(type), Key(suffix), std::move(body)});
}

// The stage timeline, the goals, the acknowledged alerts: what later
// events say about resources that earlier events create.
void Renderer::Scan() {
  std::string first_stage = e_.stage();
  for (const v1::Event& event : r_.events()) {
    bool found = false;
    for (const v1::Outcome& o : event.outcomes()) {
      if (o.kind() == v1::Outcome::STAGE_CHANGED && !o.from().empty()) {
        first_stage = o.from();
        found = true;
        break;
      }
    }
    if (found) break;
  }
  absl::Time start = e_.has_create_time() ? FromProtoTime(e_.create_time())
                                          : absl::InfinitePast();
  if (!r_.events().empty()) start = FromProtoTime(r_.events(0).record_time());
  stages_.push_back(StageSpan{first_stage, start, std::nullopt, {}});

  for (const v1::Event& event : r_.events()) {
    const v1::EventPayload& p = event.payload();
    if (p.has_session_held()) {
      stages_.back().encounter_keys.push_back(EventKey(event, "encounter"));
    }
    if (p.has_goal_set()) goal_suffixes_.push_back(EventKey(event, "goal"));
    if (p.has_alert_acknowledged() &&
        !acknowledgements_.contains(p.alert_acknowledged().alert_id())) {
      acknowledgements_[p.alert_acknowledged().alert_id()] =
          Acknowledgement{FromProtoTime(event.record_time()), event.sequence()};
    }
    for (const v1::Outcome& o : event.outcomes()) {
      if (o.kind() == v1::Outcome::STAGE_CHANGED) {
        absl::Time at = FromProtoTime(event.record_time());
        stages_.back().end = at;
        stages_.push_back(StageSpan{o.to(), at, std::nullopt, {}});
      } else if (o.kind() == v1::Outcome::ALERT_RAISED) {
        flag_suffix_by_alert_[o.subject()] =
            absl::StrCat("alerts/", o.subject(), "/flag");
      }
    }
  }
}

void Renderer::CarePlan() {
  const std::string suffix = "care-plan";
  Json plan = Start("CarePlan", suffix);
  plan.Set("instantiatesCanonical",
           One(absl::StrCat(o_.canonical_base, "/PlanDefinition/",
                            e_.workflow_id(), "|", e_.workflow_version())));
  std::string status = "unknown";
  std::string last_activity = "in-progress";
  switch (e_.state()) {
    case v1::Enrollment::ACTIVE:
      status = "active";
      break;
    case v1::Enrollment::PAUSED:
      status = "on-hold";
      last_activity = "on-hold";
      break;
    case v1::Enrollment::ENDED:
      status = "completed";
      last_activity = "completed";
      break;
    default:
      break;
  }
  plan.Set("status", status).Set("intent", "plan");
  plan.Set("category",
           One(Concept(Coding(kLocalCarePlanCategory, "ipsrt-course",
                              "IPSRT course of treatment"))));
  plan.Set("title", absl::StrCat("IPSRT course (", e_.workflow_id(), " v",
                                 e_.workflow_version(), ")"));
  plan.Set("subject", Subject());
  Json period = Json::Object();
  if (stages_.front().start != absl::InfinitePast()) {
    period.Set("start", Instant(stages_.front().start));
  }
  if (e_.state() == v1::Enrollment::ENDED && e_.has_update_time()) {
    period.Set("end", Instant(e_.update_time()));
  }
  if (!period.empty()) plan.Set("period", std::move(period));
  if (e_.has_create_time()) plan.Set("created", Instant(e_.create_time()));
  if (std::optional<Json> clinician = Clinician()) {
    plan.Set("author", *std::move(clinician));
  }
  if (!goal_suffixes_.empty()) {
    Json goals = Json::Array();
    for (const std::string& g : goal_suffixes_) goals.Add(Ref("Goal", g));
    plan.Set("goal", std::move(goals));
  }
  Json activities = Json::Array();
  for (size_t i = 0; i < stages_.size(); ++i) {
    const StageSpan& span = stages_[i];
    Json activity = Json::Object();
    if (!span.encounter_keys.empty()) {
      Json held = Json::Array();
      for (const std::string& k : span.encounter_keys) {
        held.Add(Ref("Encounter", k));
      }
      activity.Set("outcomeReference", std::move(held));
    }
    Json detail = Json::Object();
    detail.Set("code", Concept(Coding(kLocalStages, span.stage),
                               absl::StrCat("IPSRT stage ", span.stage)));
    detail.Set("status", i + 1 < stages_.size() ? std::string("completed")
                                                : last_activity);
    Json scheduled = Json::Object();
    if (span.start != absl::InfinitePast()) {
      scheduled.Set("start", Instant(span.start));
    }
    if (span.end.has_value()) scheduled.Set("end", Instant(*span.end));
    if (!scheduled.empty()) detail.Set("scheduledPeriod", std::move(scheduled));
    activity.Set("detail", std::move(detail));
    activities.Add(std::move(activity));
  }
  plan.Set("activity", std::move(activities));
  Add("CarePlan", suffix, std::move(plan), nullptr);
}

Json Renderer::SurveyObservation(const v1::Event& event,
                                 const std::string& suffix, Json code,
                                 const std::string& effective) const {
  Json obs = Start("Observation", suffix, LiteralPatient());
  obs.Set("basedOn", One(Ref("CarePlan", "care-plan")));
  obs.Set("status", "final");
  obs.Set("category",
          One(Concept(Coding(kObservationCategory, "survey", "Survey"))));
  obs.Set("code", std::move(code));
  obs.Set("subject", Subject());
  obs.Set("effectiveDateTime", effective);
  obs.Set("issued", Instant(event.record_time()));
  return obs;
}

Json Renderer::ScoreObservation(const v1::Event& event,
                                const std::string& suffix, Json code,
                                double value, absl::string_view unit,
                                const std::string& response_suffix,
                                const std::string& effective,
                                const std::string& band) const {
  Json obs = SurveyObservation(event, suffix, std::move(code), effective);
  obs.Set("valueQuantity", Quantity(value, unit));
  if (!band.empty()) {
    obs.Set("interpretation", One(Concept(Coding(kLocalBands, band), band)));
  }
  obs.Set("derivedFrom", One(Ref("QuestionnaireResponse", response_suffix)));
  return obs;
}

Json Renderer::ScorePanel(const v1::Event& event,
                          const std::string& panel_suffix,
                          const v1::Questionnaire& instrument,
                          const std::vector<std::string>& member_suffixes,
                          const std::string& authored,
                          const std::string& response_suffix) const {
  Json panel = SurveyObservation(event, panel_suffix,
                                 ConceptOf(instrument.panel_code()), authored);
  Json members = Json::Array();
  for (const std::string& m : member_suffixes) {
    members.Add(Ref("Observation", m));
  }
  panel.Set("hasMember", std::move(members));
  panel.Set("derivedFrom", One(Ref("QuestionnaireResponse", response_suffix)));
  return panel;
}

void Renderer::QuestionnaireResponse(
    const v1::Event& event,
    std::vector<std::pair<std::string, std::string>>* targets) {
  const v1::QuestionnaireResponse& qr =
      event.payload().questionnaire_response();
  const std::string& id = qr.questionnaire_id();
  const v1::Questionnaire* instrument =
      Instrument(id, qr.questionnaire_version());
  const absl::Time authored = qr.has_authored_time()
                                  ? FromProtoTime(qr.authored_time())
                                  : FromProtoTime(event.record_time());
  const std::string response_suffix = EventKey(event, "questionnaire-response");

  const ItemsById item_by_id = ItemsOf(instrument);
  const std::vector<std::string> ids =
      AnsweredItemIds(qr, instrument, item_by_id);

  Json response = Start("QuestionnaireResponse", response_suffix);
  response.Set("basedOn", One(Ref("CarePlan", "care-plan")));
  response.Set("questionnaire",
               QuestionnaireCanonical(id, qr.questionnaire_version()));
  response.Set("status", "completed");
  response.Set("subject", Subject());
  response.Set("authored", Instant(authored));
  Json items = ResponseItems(qr, ids, item_by_id);
  if (!items.empty()) response.Set("item", std::move(items));
  Add("QuestionnaireResponse", response_suffix, std::move(response), targets);

  // One Observation per score: the total, the items in the instrument's
  // order, then any other score by name.
  const std::string total_name = absl::StrCat(id, ".total");
  std::vector<ReportedScore> scores =
      ReportedScores(event, id, instrument, item_by_id);

  std::vector<std::string> member_suffixes;
  std::vector<Json> observations;
  for (ReportedScore& s : scores) {
    std::string suffix = EventKey(event, absl::StrCat("observation/", s.name));
    observations.push_back(ScoreObservation(
        event, suffix, std::move(s.code), s.value, "{score}", response_suffix,
        Instant(authored), s.name == total_name ? event.band() : ""));
    member_suffixes.push_back(std::move(suffix));
  }
  if (instrument != nullptr && !instrument->panel_code().code().empty() &&
      !member_suffixes.empty()) {
    const std::string panel_suffix = EventKey(event, "observation/panel");
    Json panel = ScorePanel(event, panel_suffix, *instrument, member_suffixes,
                            Instant(authored), response_suffix);
    Add("Observation", panel_suffix, std::move(panel), targets);
  }
  for (size_t i = 0; i < observations.size(); ++i) {
    Add("Observation", member_suffixes[i], std::move(observations[i]), targets);
  }
}

std::optional<std::string> Renderer::DiaryDay(
    const v1::Event& event,
    std::vector<std::pair<std::string, std::string>>* targets) {
  const v1::SrmDiaryDay& day = event.payload().srm_diary_day();
  const std::string instrument =
      day.instrument().empty() ? "srm5" : day.instrument();
  const std::string response_suffix = EventKey(event, "questionnaire-response");
  // A correction replaces the latest earlier entry for the same date: it is
  // the amended response, linked to that one.
  std::optional<std::string> replaced;
  if (!day.local_date().empty()) {
    auto earlier = diary_by_date_.find(day.local_date());
    if (day.correction() && earlier != diary_by_date_.end()) {
      replaced = earlier->second;
    }
    diary_by_date_[day.local_date()] = response_suffix;
  }
  Json response = Start("QuestionnaireResponse", response_suffix);
  if (replaced.has_value()) {
    Json link = Json::Object();
    link.Set("url",
             absl::StrCat(o_.canonical_base, "/StructureDefinition/replaces"));
    link.Set("valueReference", Ref("QuestionnaireResponse", *replaced));
    response.Set("extension", One(std::move(link)));
  }
  response.Set("basedOn", One(Ref("CarePlan", "care-plan")));
  response.Set("questionnaire", QuestionnaireCanonical(instrument, 0));
  response.Set("status", replaced.has_value() ? "amended" : "completed");
  response.Set("subject", Subject());
  response.Set("authored", Instant(event.record_time()));
  Json items = Json::Array();
  if (!day.local_date().empty()) {
    Json date = Json::Object();
    date.Set("valueDate", day.local_date());
    Json item = Json::Object();
    item.Set("linkId", "date").Set("answer", One(std::move(date)));
    items.Add(std::move(item));
  }
  for (const v1::SrmActivity& a : day.activities()) {
    Json item = Json::Object();
    item.Set("linkId", a.activity());
    if (!a.local_time().empty()) {
      Json answer = Json::Object();
      answer.Set("valueTime", absl::StrCat(a.local_time(), ":00"));
      if (a.people_code() >= 0) {
        Json people_answer = Json::Object();
        people_answer.Set("valueInteger", Json::Int(a.people_code()));
        Json people = Json::Object();
        people.Set("linkId", absl::StrCat(a.activity(), ".people"))
            .Set("answer", One(std::move(people_answer)));
        answer.Set("item", One(std::move(people)));
      }
      item.Set("answer", One(std::move(answer)));
    }
    items.Add(std::move(item));
  }
  Json mood_answer = Json::Object();
  mood_answer.Set("valueInteger", Json::Int(day.mood()));
  Json mood = Json::Object();
  mood.Set("linkId", "mood").Set("answer", One(std::move(mood_answer)));
  items.Add(std::move(mood));
  response.Set("item", std::move(items));
  Add("QuestionnaireResponse", response_suffix, std::move(response), targets);

  // The weekly score and activity level index as of this day (the
  // per-activity detail scores stay in the engine), effective on the
  // diary's date.
  const std::string effective = day.local_date().empty()
                                    ? Instant(event.record_time())
                                    : day.local_date();
  for (const auto& [name, unit] :
       {std::pair<std::string, std::string>{"srm.score", "{score}"},
        {"srm.ali", "{count}"}}) {
    auto it = event.scores().find(name);
    if (it == event.scores().end()) continue;
    const std::string suffix =
        EventKey(event, absl::StrCat("observation/", name));
    Add("Observation", suffix,
        ScoreObservation(event, suffix,
                         Concept(Coding(kLocalInstruments, name), name),
                         it->second, unit, response_suffix, effective, ""),
        targets);
  }
  return replaced;
}

void Renderer::Encounter(
    const v1::Event& event,
    std::vector<std::pair<std::string, std::string>>* targets) {
  const v1::SessionHeld& held = event.payload().session_held();
  const std::string suffix = EventKey(event, "encounter");
  Json encounter = Start("Encounter", suffix);
  encounter.Set("status", "finished");
  encounter.Set(
      "class", Coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB",
                      "ambulatory"));
  encounter.Set("type", One(Concept(Coding(kLocalEncounterType, "ipsrt-session",
                                           "IPSRT session"))));
  encounter.Set("subject", Subject());
  if (std::optional<Json> clinician = Clinician()) {
    Json participant = Json::Object();
    participant.Set("individual", *std::move(clinician));
    encounter.Set("participant", One(std::move(participant)));
  }
  absl::Time start = held.has_start_time() ? FromProtoTime(held.start_time())
                                           : FromProtoTime(event.record_time());
  Json period = Json::Object();
  period.Set("start", Instant(start));
  if (held.duration_minutes() > 0) {
    period.Set("end", Instant(start + absl::Minutes(held.duration_minutes())));
  }
  encounter.Set("period", std::move(period));
  if (held.duration_minutes() > 0) {
    encounter.Set("length", Quantity(held.duration_minutes(), "min"));
  }
  Add("Encounter", suffix, std::move(encounter), targets);
}

void Renderer::Goal(const v1::Event& event,
                    std::vector<std::pair<std::string, std::string>>* targets) {
  const v1::GoalSet& goal = event.payload().goal_set();
  const std::string suffix = EventKey(event, "goal");
  Json g = Start("Goal", suffix);
  g.Set("lifecycleStatus",
        e_.state() == v1::Enrollment::ENDED ? "completed" : "active");
  if (!goal.problem_area().empty()) {
    g.Set("category",
          One(Concept(Coding(kLocalProblemAreas, goal.problem_area()),
                      goal.problem_area())));
  }
  Json description = Json::Object();
  description.Set("text", goal.description());
  g.Set("description", std::move(description));
  g.Set("subject", Subject());
  g.Set("startDate", absl::FormatCivilTime(absl::ToCivilDay(
                         FromProtoTime(event.record_time()), zone_)));
  if (!goal.target().empty()) {
    // The target is the template's condition text ("srm.score >= 4"); it
    // has no code of its own, so it is the measure's text.
    Json measure = Json::Object();
    measure.Set("text", goal.target());
    Json target = Json::Object();
    target.Set("measure", std::move(measure));
    g.Set("target", One(std::move(target)));
  }
  if (std::optional<Json> clinician = Clinician()) {
    g.Set("expressedBy", *std::move(clinician));
  }
  Add("Goal", suffix, std::move(g), targets);
}

void Renderer::RelapsePlan(
    const v1::Event& event,
    std::vector<std::pair<std::string, std::string>>* targets) {
  const v1::RelapsePreventionPlan& p = event.payload().relapse_plan();
  const std::string suffix = EventKey(event, "care-plan");
  Json plan = Start("CarePlan", suffix);
  plan.Set("partOf", One(Ref("CarePlan", "care-plan")));
  plan.Set("status", "active").Set("intent", "plan");
  plan.Set("category",
           One(Concept(Coding(kLocalCarePlanCategory, "relapse-prevention",
                              "Relapse-prevention plan"))));
  plan.Set("title", "Relapse-prevention plan");
  plan.Set("subject", Subject());
  plan.Set("created", Instant(event.record_time()));
  if (std::optional<Json> clinician = Clinician()) {
    plan.Set("author", *std::move(clinician));
  }
  Json notes = Json::Array();
  auto section =
      [&](absl::string_view title,
          const google::protobuf::RepeatedPtrField<std::string>& lines) {
        if (lines.empty()) return;
        Json note = Json::Object();
        note.Set("time", Instant(event.record_time()));
        note.Set("text", absl::StrCat(title, ": ", absl::StrJoin(lines, "; ")));
        notes.Add(std::move(note));
      };
  section("Early warning signs", p.early_warning_signs());
  section("Triggers", p.triggers());
  section("Coping strategies", p.coping_strategies());
  section("Supports", p.supports());
  section("Professional contacts", p.professional_contacts());
  if (!notes.empty()) plan.Set("note", std::move(notes));
  Add("CarePlan", suffix, std::move(plan), targets);
}

void Renderer::DisruptionPlan(
    const v1::Event& event,
    std::vector<std::pair<std::string, std::string>>* targets) {
  const v1::DisruptionPlan& p = event.payload().disruption_plan();
  const std::string suffix = EventKey(event, "care-plan");
  Json plan = Start("CarePlan", suffix);
  plan.Set("partOf", One(Ref("CarePlan", "care-plan")));
  plan.Set("status", "active").Set("intent", "plan");
  plan.Set("category",
           One(Concept(Coding(kLocalCarePlanCategory, "disruption-plan",
                              "Plan for a disruption of routines"))));
  plan.Set("title", p.kind().empty()
                        ? std::string("Disruption plan")
                        : absl::StrCat("Disruption plan: ", p.kind()));
  plan.Set("description", p.plan());
  plan.Set("subject", Subject());
  if (p.has_window()) {
    Json period = Json::Object();
    if (p.window().has_start())
      period.Set("start", Instant(p.window().start()));
    if (p.window().has_end()) period.Set("end", Instant(p.window().end()));
    if (!period.empty()) plan.Set("period", std::move(period));
  }
  plan.Set("created", Instant(event.record_time()));
  if (std::optional<Json> clinician = Clinician()) {
    plan.Set("author", *std::move(clinician));
  }
  Add("CarePlan", suffix, std::move(plan), targets);
}

void Renderer::Flag(const v1::Event& event, const v1::Outcome& raised,
                    std::vector<std::pair<std::string, std::string>>* targets) {
  const std::string& alert_id = raised.subject();
  // The alert id is "<alert spec id>-<sequence of the raising event>".
  std::string spec = alert_id;
  if (size_t dash = spec.rfind('-'); dash != std::string::npos) {
    spec.resize(dash);
  }
  auto ack = acknowledgements_.find(alert_id);
  Json flag = Start("Flag", flag_suffix_by_alert_[alert_id]);
  flag.Set("status", ack == acknowledgements_.end() ? "active" : "inactive");
  flag.Set("category",
           One(Concept(Coding("http://terminology.hl7.org/CodeSystem/"
                              "flag-category",
                              "safety", "Safety"))));
  flag.Set("code",
           Concept(Coding(kLocalAlerts, spec),
                   absl::StrCat("IPSRT alert ", spec,
                                raised.to().empty()
                                    ? ""
                                    : absl::StrCat(" (", raised.to(), ")"))));
  flag.Set("subject", Subject());
  Json period = Json::Object();
  period.Set("start", Instant(event.record_time()));
  if (ack != acknowledgements_.end()) {
    period.Set("end", Instant(ack->second.time));
  }
  flag.Set("period", std::move(period));
  Add("Flag", flag_suffix_by_alert_[alert_id], std::move(flag), targets);
}

void Renderer::Provenance(
    const v1::Event& event, bool update,
    const std::vector<std::pair<std::string, std::string>>& targets,
    const std::optional<std::string>& revised) {
  if (targets.empty()) return;
  const std::string suffix = EventKey(event, "provenance");
  Json p = Start("Provenance", suffix);
  Json target = Json::Array();
  for (const auto& [type, key] : targets) target.Add(Ref(type, key));
  p.Set("target", std::move(target));
  p.Set("recorded", Instant(event.record_time()));
  p.Set("activity",
        Concept(Coding("http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                       update ? "UPDATE" : "CREATE",
                       update ? "revise" : "create")));
  Json agent = Json::Object();
  agent.Set("type", Concept(Coding("http://terminology.hl7.org/CodeSystem/"
                                   "provenance-participant-type",
                                   "author", "Author")));
  Json who = Json::Object();
  Json identifier = Json::Object();
  identifier.Set("system", kActorSystem)
      .Set("value", event.actor().subject().empty() ? std::string("unknown")
                                                    : event.actor().subject());
  who.Set("identifier", std::move(identifier));
  if (!event.actor().role().empty()) {
    who.Set("display", absl::StrCat("ipsrt ", event.actor().role()));
  }
  agent.Set("who", std::move(who));
  p.Set("agent", One(std::move(agent)));
  if (revised.has_value()) {
    Json entity = Json::Object();
    entity.Set("role", "revision");
    entity.Set("what", Ref("QuestionnaireResponse", *revised));
    p.Set("entity", One(std::move(entity)));
  }
  Add("Provenance", suffix, std::move(p), nullptr);
}

std::vector<Resource> Renderer::Render() {
  absl::TimeZone zone;
  if (absl::LoadTimeZone(e_.time_zone(), &zone)) zone_ = zone;
  Scan();

  size_t next = 0;
  std::vector<std::pair<std::string, std::string>> targets;
  if (!r_.events().empty() && r_.events(0).payload().has_enrollment_created()) {
    CarePlan();
    targets.emplace_back("CarePlan", "care-plan");
    Provenance(r_.events(0), false, targets);
    next = 1;
  } else {
    CarePlan();
  }
  for (; next < static_cast<size_t>(r_.events_size()); ++next) {
    const v1::Event& event = r_.events(static_cast<int>(next));
    const v1::EventPayload& p = event.payload();
    targets.clear();
    bool update = false;
    std::optional<std::string> revised;
    switch (p.payload_case()) {
      case v1::EventPayload::kQuestionnaireResponse:
        QuestionnaireResponse(event, &targets);
        break;
      case v1::EventPayload::kSrmDiaryDay:
        revised = DiaryDay(event, &targets);
        update = revised.has_value();
        break;
      case v1::EventPayload::kSessionHeld:
        Encounter(event, &targets);
        break;
      case v1::EventPayload::kGoalSet:
        Goal(event, &targets);
        break;
      case v1::EventPayload::kRelapsePlan:
        RelapsePlan(event, &targets);
        break;
      case v1::EventPayload::kDisruptionPlan:
        DisruptionPlan(event, &targets);
        break;
      case v1::EventPayload::kAlertAcknowledged: {
        // The Flag (rendered with the raising event) became inactive here.
        auto flag =
            flag_suffix_by_alert_.find(p.alert_acknowledged().alert_id());
        auto ack = acknowledgements_.find(p.alert_acknowledged().alert_id());
        if (flag != flag_suffix_by_alert_.end() &&
            ack != acknowledgements_.end() &&
            ack->second.sequence == event.sequence()) {
          targets.emplace_back("Flag", flag->second);
          update = true;
        }
        break;
      }
      default:
        // enrollment.updated, time.elapsed, task.completed, stage.changed,
        // workflow.migrated, reminder.acknowledged: no resource of their
        // own (stage changes are the CarePlan's activities).
        break;
    }
    for (const v1::Outcome& o : event.outcomes()) {
      if (o.kind() == v1::Outcome::ALERT_RAISED) Flag(event, o, &targets);
    }
    Provenance(event, update, targets, revised);
  }
  return std::move(out_);
}

absl::Status CheckRequest(const pv1::RenderExportRequest& request) {
  const v1::Enrollment& e = request.enrollment();
  if (e.name().empty()) {
    return absl::InvalidArgumentError("enrollment.name: must not be empty");
  }
  if (e.patient_ref().empty()) {
    return absl::InvalidArgumentError(
        "enrollment.patient_ref: must not be empty");
  }
  if (e.workflow_id().empty()) {
    return absl::InvalidArgumentError(
        "enrollment.workflow_id: must not be empty");
  }
  if (!request.has_export_time()) {
    return absl::InvalidArgumentError(
        "export_time: must be set (it fixes the bundle's timestamp)");
  }
  for (int i = 0; i < request.events_size(); ++i) {
    const v1::Event& event = request.events(i);
    if (i > 0 && event.sequence() <= request.events(i - 1).sequence()) {
      return absl::InvalidArgumentError(
          absl::StrCat("events[", i, "].sequence: ", event.sequence(),
                       " does not follow ", request.events(i - 1).sequence(),
                       "; events must be in sequence order"));
    }
    if (!event.has_record_time()) {
      return absl::InvalidArgumentError(
          absl::StrCat("events[", i, "].record_time: must be set"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string StableUuid(absl::string_view name) {
  std::string hex = Sha256Hex(name).substr(0, 32);
  static constexpr char kHex[] = "0123456789abcdef";
  hex[12] = '8';  // version 8: custom (here SHA-256 name-based)
  int variant_nibble = 0;
  absl::SimpleHexAtoi(hex.substr(16, 1), &variant_nibble);
  hex[16] = kHex[(variant_nibble & 0x3) | 0x8];  // variant 10xx
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-",
                      hex.substr(12, 4), "-", hex.substr(16, 4), "-",
                      hex.substr(20, 12));
}

absl::StatusOr<pv1::RenderExportResponse> RenderFhirExport(
    const FhirExportOptions& options, const pv1::RenderExportRequest& request) {
  Form form;
  if (request.format() == kCollectionFormat) {
    form = Form::kCollection;
  } else if (request.format() == kTransactionFormat) {
    form = Form::kTransaction;
  } else if (request.format() == kResourcesFormat) {
    form = Form::kResources;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("format: unknown export format \"", request.format(),
                     "\"; fhir-r4 renders ", kCollectionFormat, ", ",
                     kTransactionFormat, " and ", kResourcesFormat));
  }
  if (absl::Status s = CheckRequest(request); !s.ok()) return s;

  std::vector<Resource> resources = Renderer(options, request, form).Render();
  pv1::RenderExportResponse response;
  if (form == Form::kResources) {
    response.set_content_type("application/fhir+ndjson");
    for (const Resource& r : resources) {
      pv1::ExportedResource* out = response.add_resources();
      out->set_resource_type(r.type);
      out->set_content(r.body.Write());
    }
    return response;
  }

  const std::string& name = request.enrollment().name();
  const int64_t revision =
      request.events().empty()
          ? request.enrollment().revision()
          : request.events(request.events_size() - 1).sequence();
  const std::string bundle_key =
      absl::StrCat(name, "/bundles/", request.format(), "/", revision);
  Json bundle = Json::Object();
  bundle.Set("resourceType", "Bundle");
  bundle.Set("id", StableUuid(bundle_key));
  Json identifier = Json::Object();
  identifier.Set("system", options.identifier_system).Set("value", bundle_key);
  bundle.Set("identifier", std::move(identifier));
  bundle.Set("type", form == Form::kCollection ? "collection" : "transaction");
  bundle.Set("timestamp", Instant(request.export_time()));
  Json entries = Json::Array();
  for (Resource& r : resources) {
    Json entry = Json::Object();
    entry.Set("fullUrl", absl::StrCat("urn:uuid:", StableUuid(r.key)));
    entry.Set("resource", std::move(r.body));
    if (form == Form::kTransaction) {
      Json req = Json::Object();
      req.Set("method", "POST").Set("url", r.type);
      req.Set("ifNoneExist",
              absl::StrCat(r.type == "Provenance" ? "_tag=" : "identifier=",
                           QueryEscape(options.identifier_system), "|",
                           QueryEscape(r.key)));
      entry.Set("request", std::move(req));
    }
    entries.Add(std::move(entry));
  }
  bundle.Set("entry", std::move(entries));
  response.set_content_type("application/fhir+json");
  response.set_content(bundle.Write());
  return response;
}

}  // namespace ipsrt::fhir
