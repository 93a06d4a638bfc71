#include "cli/score_file.h"

#include <cmath>
#include <map>
#include <optional>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/json_string.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "instruments/srm.h"

namespace ipsrt::cli {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

absl::Status Bad(absl::string_view file, absl::string_view path,
                 absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": ", path, path.empty() ? "" : ": ", message));
}

// Refuses input the JSON parser would spend long on (its recursion is
// unbounded) with a message naming the byte offset.
absl::Status CheckJsonBounds(absl::string_view file, absl::string_view json) {
  if (json.size() > kMaxAnswersFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": the file is ", json.size(),
                     " bytes; the limit is ", kMaxAnswersFileBytes, " bytes"));
  }
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxAnswersJsonDepth) {
        return absl::InvalidArgumentError(
            absl::StrCat(file, ": byte ", i, ": JSON nested deeper than ",
                         kMaxAnswersJsonDepth, " levels"));
      }
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::ScoreResponseRequest> ParseAnswersFile(
    absl::string_view file, absl::string_view json, absl::string_view id,
    int version) {
  if (absl::Status s = CheckJsonBounds(file, json); !s.ok()) return s;
  Struct root;
  google::protobuf::util::JsonParseOptions options;
  if (!google::protobuf::util::JsonStringToMessage(std::string(json), &root,
                                                   options)
           .ok()) {
    return Bad(file, "", "not a JSON object");
  }
  v1::ScoreResponseRequest request;
  v1::QuestionnaireResponse* response = request.mutable_response();
  response->set_questionnaire_id(std::string(id));
  response->set_questionnaire_version(version);
  for (const auto& [key, unused] : root.fields()) {
    if (key != "answers" && key != "days") {
      return Bad(file, key, "unknown key (expected answers or days)");
    }
  }
  auto answers = root.fields().find("answers");
  if (answers != root.fields().end()) {
    if (!answers->second.has_struct_value()) {
      return Bad(file, "answers", "must be an object of item ids to values");
    }
    for (const auto& [item, value] : answers->second.struct_value().fields()) {
      std::string path = absl::StrCat("answers[\"", item, "\"]");
      if (!value.has_number_value() ||
          value.number_value() != std::floor(value.number_value()) ||
          std::fabs(value.number_value()) > 1e9) {
        return Bad(file, path, "must be a whole number");
      }
      (*response->mutable_answers())[item] =
          static_cast<int32_t>(value.number_value());
    }
  }
  auto days = root.fields().find("days");
  if (days != root.fields().end()) {
    if (!days->second.has_list_value()) {
      return Bad(file, "days", "must be a list of diary days");
    }
    const auto& list = days->second.list_value().values();
    for (int d = 0; d < list.size(); ++d) {
      std::string path = absl::StrCat("days[", d, "]");
      if (!list[d].has_struct_value()) {
        return Bad(file, path, "must be an object with date and activities");
      }
      v1::SrmDiaryDay* day = request.add_days();
      day->set_instrument(std::string(id));
      for (const auto& [key, value] : list[d].struct_value().fields()) {
        std::string kpath = absl::StrCat(path, ".", key);
        if (key == "date") {
          if (!value.has_string_value()) {
            return Bad(file, kpath, "must be a date \"YYYY-MM-DD\"");
          }
          day->set_local_date(value.string_value());
        } else if (key == "mood") {
          if (!value.has_number_value() ||
              value.number_value() != std::floor(value.number_value())) {
            return Bad(file, kpath, "must be a whole number from -5 to +5");
          }
          day->set_mood(static_cast<int32_t>(value.number_value()));
        } else if (key == "activities") {
          if (!value.has_struct_value()) {
            return Bad(file, kpath,
                       "must be an object of activity ids to \"HH:MM\"");
          }
          for (const auto& [activity, time] : value.struct_value().fields()) {
            if (!time.has_string_value()) {
              return Bad(file, absl::StrCat(kpath, ".", activity),
                         "must be a time \"HH:MM\"");
            }
            v1::SrmActivity* a = day->add_activities();
            a->set_activity(activity);
            a->set_local_time(time.string_value());
            a->set_people_code(-1);
          }
        } else {
          return Bad(file, kpath,
                     "unknown key (expected date, activities or mood)");
        }
      }
      if (day->local_date().empty()) {
        return Bad(file, absl::StrCat(path, ".date"), "is required");
      }
    }
  }
  return request;
}

std::string ScoreResultJson(absl::string_view instrument,
                            const v1::ScoreResponseResponse& scored) {
  std::map<std::string, double> scores(scored.scores().begin(),
                                       scored.scores().end());
  Json out = Json::object();
  out["instrument"] = std::string(instrument);
  if (scores.count("srm.ali") > 0) {
    auto it = scores.find("srm.score");
    out["score"] = it == scores.end() ? Json(nullptr) : JsonDecimal(it->second);
    out["qualifying_activities"] =
        JsonDecimal(scores["srm.qualifying_activities"]);
    out["hits"] = JsonDecimal(scores["srm.hits"]);
    out["ali"] = JsonDecimal(scores["srm.ali"]);
    // srm.<activity>.days / .hits / .habitual_minutes, by activity.
    std::map<std::string, std::map<std::string, double>> activities;
    for (const auto& [name, value] : scores) {
      if (!absl::StartsWith(name, "srm.")) continue;
      absl::string_view rest = absl::string_view(name).substr(4);
      size_t dot = rest.rfind('.');
      if (dot == absl::string_view::npos) continue;
      activities[std::string(rest.substr(0, dot))]
                [std::string(rest.substr(dot + 1))] = value;
    }
    Json rendered = Json::object();
    for (auto& [activity, parts] : activities) {
      Json& a = rendered[activity];
      a["days"] = JsonDecimal(parts["days"]);
      a["hits"] = JsonDecimal(parts["hits"]);
      auto ht = parts.find("habitual_minutes");
      if (ht != parts.end()) a["habitual_time"] = FormatMinutes(ht->second);
    }
    out["activities"] = std::move(rendered);
  }
  Json all = Json::object();
  for (const auto& [name, value] : scores) all[name] = JsonDecimal(value);
  out["scores"] = std::move(all);
  out["band"] = scored.band().empty() ? Json(nullptr) : Json(scored.band());
  Json flags = Json::array();
  for (const std::string& f : scored.flags()) flags.push_back(f);
  out["flags"] = std::move(flags);
  return JsonText(out);
}

}  // namespace ipsrt::cli
