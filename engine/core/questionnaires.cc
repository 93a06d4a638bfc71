#include "core/questionnaires.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/validation.h"

namespace ipsrt {

absl::StatusOr<std::unique_ptr<QuestionnaireCatalog>>
QuestionnaireCatalog::Build(const PluginRegistry& plugins) {
  auto catalog = std::make_unique<QuestionnaireCatalog>();
  for (LoadedPlugin* plugin : plugins.WithKind(plugin::v1::QUESTIONNAIRE)) {
    absl::StatusOr<plugin::v1::ListInstrumentsResponse> listed =
        plugin->ListInstruments();
    if (!listed.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin ", plugin->name(),
          " cannot list its instruments: ", listed.status().message()));
    }
    for (const v1::Questionnaire& q : listed->instruments()) {
      if (q.id().empty() || q.version() < 1) {
        return absl::FailedPreconditionError(absl::StrCat(
            "plugin ", plugin->name(),
            " lists an instrument without an id or a version >= 1"));
      }
      Entry& entry = catalog->instruments_[q.id()];
      if (entry.plugin != nullptr && entry.plugin != plugin) {
        return absl::FailedPreconditionError(
            absl::StrCat("instrument ", q.id(), " is served by two plugins, ",
                         entry.plugin->name(), " and ", plugin->name(),
                         "; load only one of them"));
      }
      entry.plugin = plugin;
      v1::Questionnaire& stored = entry.versions[q.version()];
      stored = q;
      stored.set_plugin(plugin->name());
    }
  }
  return catalog;
}

std::vector<const v1::Questionnaire*> QuestionnaireCatalog::List() const {
  std::vector<const v1::Questionnaire*> out;
  for (const auto& [id, entry] : instruments_) {
    out.push_back(&entry.versions.rbegin()->second);
  }
  return out;
}

absl::StatusOr<const v1::Questionnaire*> QuestionnaireCatalog::Get(
    const std::string& id, int version) const {
  auto it = instruments_.find(id);
  if (it == instruments_.end()) {
    return absl::NotFoundError(absl::StrCat("questionnaire ", QuoteInput(id),
                                            " is not served by any "
                                            "loaded plugin"));
  }
  if (version == 0) return &it->second.versions.rbegin()->second;
  auto v = it->second.versions.find(version);
  if (v == it->second.versions.end()) {
    return absl::NotFoundError(absl::StrCat("questionnaire ", QuoteInput(id),
                                            " has no version ", version));
  }
  return &v->second;
}

absl::StatusOr<v1::ScoreResponseResponse> QuestionnaireCatalog::Score(
    const v1::ScoreResponseRequest& request, absl::string_view field) const {
  const v1::QuestionnaireResponse& response = request.response();
  if (response.questionnaire_id().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".questionnaire_id: is required"));
  }
  auto it = instruments_.find(response.questionnaire_id());
  if (it == instruments_.end()) {
    return absl::NotFoundError(
        absl::StrCat(field, ".questionnaire_id: questionnaire ",
                     QuoteInput(response.questionnaire_id()),
                     " is not served by any loaded plugin"));
  }
  plugin::v1::ScoreResponseRequest forwarded;
  *forwarded.mutable_response() = response;
  *forwarded.mutable_days() = request.days();
  absl::StatusOr<plugin::v1::ScoreResponseResponse> scored =
      it->second.plugin->ScoreResponse(forwarded);
  if (!scored.ok()) {
    // Plugins name the field inside the response (or `days[i]` of the
    // request); the API names it from the request's root.
    if (absl::IsInvalidArgument(scored.status())) {
      absl::string_view message = scored.status().message();
      if (absl::StartsWith(message, "days")) {
        return scored.status();
      }
      return absl::InvalidArgumentError(absl::StrCat(field, ".", message));
    }
    return scored.status();
  }
  v1::ScoreResponseResponse out;
  out.mutable_scores()->insert(scored->scores().begin(),
                               scored->scores().end());
  out.set_band(scored->band());
  out.mutable_flags()->CopyFrom(scored->flags());
  out.set_plugin(it->second.plugin->name());
  return out;
}

}  // namespace ipsrt
