// QuestionnaireCatalog: the instruments that questionnaire plugins serve,
// by id, and scoring routed to the plugin that owns each instrument.
//
// Built once at start-up from every plugin of kind QUESTIONNAIRE; two
// plugins that serve the same instrument id refuse the start. Scoring is
// the plugin's (deterministic by contract); the catalog adds routing and
// request validation that names fields.
#ifndef IPSRT_CORE_QUESTIONNAIRES_H_
#define IPSRT_CORE_QUESTIONNAIRES_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ipsrt/v1/questionnaire.pb.h"
#include "plugin_host/registry.h"

namespace ipsrt {

class QuestionnaireCatalog {
 public:
  // An empty catalog (no questionnaire plugins).
  QuestionnaireCatalog() = default;

  // FAILED_PRECONDITION when an instrument id is served twice or a plugin
  // cannot list its instruments.
  static absl::StatusOr<std::unique_ptr<QuestionnaireCatalog>> Build(
      const PluginRegistry& plugins);

  // Current version of each instrument, ordered by id.
  std::vector<const v1::Questionnaire*> List() const;

  // NOT_FOUND naming the id (and version when given; 0 means current).
  absl::StatusOr<const v1::Questionnaire*> Get(const std::string& id,
                                               int version) const;

  // Validates and scores. INVALID_ARGUMENT names the field or item from
  // `field`, the path of the response in the caller's request
  // (`response.answers["9"]: ...`, or with field
  // "event.questionnaire_response" `event.questionnaire_response.answers[
  // "9"]: ...`); a diary's days are named from the request's root
  // (`days[0].local_date: ...`). NOT_FOUND naming `field`.questionnaire_id
  // for an instrument no plugin serves; UNAVAILABLE / DEADLINE_EXCEEDED
  // when the plugin is down or slow.
  absl::StatusOr<v1::ScoreResponseResponse> Score(
      const v1::ScoreResponseRequest& request,
      absl::string_view field = "response") const;

 private:
  struct Entry {
    // By version.
    std::map<int, v1::Questionnaire> versions;
    LoadedPlugin* plugin = nullptr;
  };
  std::map<std::string, Entry> instruments_;
};

}  // namespace ipsrt

#endif  // IPSRT_CORE_QUESTIONNAIRES_H_
