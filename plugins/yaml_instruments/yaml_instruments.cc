// yaml-instruments: clinician-defined questionnaires read from YAML files.
//
// Config (ipsrtd.yaml):
//   - path: libipsrt_yaml_instruments.so
//     config:
//       directories: [../workflows/instruments]   # relative to the config
//
// Every *.yaml / *.yml file of each directory defines one instrument; the
// format is documented in workflows/instruments/README.md. Loading is all
// or nothing: any problem in any file refuses Configure with every
// diagnostic (`file:line:col: error: path: message`), so a definition with
// errors never half-loads and ipsrtd does not start.
//
// Scoring: the sum of the scored items' answer values ("<id>.total"), each
// item as "<id>.item<N>" for a numeric item id and "<id>.<item>" otherwise,
// the band whose inclusive range holds the total, and the flags whose
// condition holds, named "<id>.<flag>".
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/yaml_reader.h"
#include "ipsrt/plugin/plugin.h"

namespace {

namespace pv1 = ::ipsrt::plugin::v1;
namespace v1 = ::ipsrt::v1;
using ipsrt::YamlReader;

// ---- Conditions: `<operand> <op> <integer>` joined by `and` or `or`.
//   operand: total | item("ID")
//   op: >= > <= < == !=
// One connective per condition (no mixing, no parentheses): small enough
// to read at a glance, and every instrument flag seen so far fits.
struct Comparison {
  std::string item;  // empty: the total
  std::string op;
  int value = 0;
};

struct Condition {
  std::vector<Comparison> terms;
  bool any = false;  // true: `or`; false: `and`
};

// ParseCondition returns the condition or a message naming the offending
// text.
absl::StatusOr<Condition> ParseCondition(absl::string_view text) {
  Condition c;
  std::string connective;
  std::vector<std::string> words = absl::StrSplit(
      std::string(text), absl::ByAnyChar(" \t"), absl::SkipEmpty());
  size_t i = 0;
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(std::string(why));
  };
  while (true) {
    if (i + 3 > words.size()) {
      return bad(absl::StrCat("\"", text,
                              "\" is not `total|item(\"ID\") OP NUMBER` "
                              "(joined by and / or)"));
    }
    Comparison cmp;
    const std::string& operand = words[i];
    if (operand == "total") {
    } else if (operand.size() > 8 && absl::StartsWith(operand, "item(\"") &&
               absl::EndsWith(operand, "\")")) {
      cmp.item = operand.substr(6, operand.size() - 8);
    } else {
      return bad(absl::StrCat("unknown operand \"", operand,
                              "\" (expected total or item(\"ID\"))"));
    }
    cmp.op = words[i + 1];
    static const std::set<std::string> kOps = {
        ">=", ">", "<=", "<", "==", "!="};
    if (kOps.count(cmp.op) == 0) {
      return bad(absl::StrCat("unknown operator \"", cmp.op,
                              "\" (expected >=, >, <=, <, == or !=)"));
    }
    if (!absl::SimpleAtoi(words[i + 2], &cmp.value)) {
      return bad(absl::StrCat("\"", words[i + 2], "\" is not a whole number"));
    }
    c.terms.push_back(std::move(cmp));
    i += 3;
    if (i == words.size()) return c;
    const std::string& join = words[i];
    if (join != "and" && join != "or") {
      return bad(absl::StrCat("\"", join, "\" where and / or was expected"));
    }
    if (!connective.empty() && join != connective) {
      return bad("mixes and with or; use one connective per condition");
    }
    connective = join;
    c.any = join == "or";
    ++i;
  }
}

bool Compare(int lhs, const std::string& op, int rhs) {
  if (op == ">=") return lhs >= rhs;
  if (op == ">") return lhs > rhs;
  if (op == "<=") return lhs <= rhs;
  if (op == "<") return lhs < rhs;
  if (op == "==") return lhs == rhs;
  return lhs != rhs;
}

// ---- Instruments.
struct Flag {
  std::string name;
  Condition when;
};

struct Instrument {
  v1::Questionnaire questionnaire;
  std::vector<Flag> flags;
};

bool IsIdentifier(absl::string_view s, bool allow_dash) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '_' && !(allow_dash && c == '-')) {
      return false;
    }
  }
  return true;
}

std::string ItemScoreName(const std::string& id, const std::string& item) {
  bool numeric = std::all_of(item.begin(), item.end(),
                             [](char c) { return absl::ascii_isdigit(c); });
  return numeric ? absl::StrCat(id, ".item", item)
                 : absl::StrCat(id, ".", item);
}

// ReadItem reads the item at `node` (`path`: items[i]) into `q`, with
// its answer options; `seen` holds the ids of the earlier items.
void ReadItem(YamlReader& r, const YAML::Node& node, const std::string& path,
              std::set<std::string>& seen, v1::Questionnaire& q) {
  if (!r.ExpectMap(node, path, false)) return;
  r.ExpectKeys(node, path, {"id", "text", "required", "scored", "options"});
  v1::QuestionnaireItem* item = q.add_items();
  item->set_id(r.String(node, path, "id", "", true));
  if (node["id"] && !item->id().empty()) {
    if (!IsIdentifier(item->id(), false)) {
      r.Error(node["id"], YamlReader::Join(path, "id"),
              "must be letters, digits or '_'");
    } else if (!seen.insert(item->id()).second) {
      r.Error(node["id"], YamlReader::Join(path, "id"),
              absl::StrCat("\"", item->id(),
                           "\" is used by an earlier "
                           "item"));
    }
  }
  item->set_text(r.String(node, path, "text", "", true));
  item->set_required(r.Bool(node, path, "required", true));
  item->set_scored(r.Bool(node, path, "scored", true));
  const YAML::Node options = node["options"];
  std::string opath = YamlReader::Join(path, "options");
  if (!options) {
    r.Error(node, opath, "is required");
    return;
  }
  if (!options.IsSequence() || options.size() == 0) {
    r.Error(options, opath, "must be a non-empty list of options");
    return;
  }
  std::set<int> values;
  for (size_t k = 0; k < options.size(); ++k) {
    std::string p = YamlReader::Join(opath, k);
    if (!r.ExpectMap(options[k], p, false)) continue;
    r.ExpectKeys(options[k], p, {"value", "label"});
    if (!options[k]["value"])
      r.Error(options[k], YamlReader::Join(p, "value"), "is required");
    v1::AnswerOption* o = item->add_options();
    o->set_value(
        static_cast<int32_t>(r.Int(options[k], p, "value", 0, -1000, 1000)));
    o->set_label(r.String(options[k], p, "label", "", true));
    if (options[k]["value"] && !values.insert(o->value()).second) {
      r.Error(options[k]["value"], YamlReader::Join(p, "value"),
              absl::StrCat(o->value(),
                           " is the value of an earlier "
                           "option"));
    }
  }
}

// ReadItems reads the required, non-empty `items` list into `q`.
void ReadItems(YamlReader& r, const YAML::Node& root, v1::Questionnaire& q) {
  const YAML::Node items = root["items"];
  if (!items) {
    r.Error(root, "items", "is required");
  } else if (!items.IsSequence() || items.size() == 0) {
    r.Error(items, "items", "must be a non-empty list of items");
  } else {
    std::set<std::string> seen;
    for (size_t i = 0; i < items.size(); ++i) {
      ReadItem(r, items[i], YamlReader::Join("items", i), seen, q);
    }
  }
}

// ReadBands reads the optional `bands` list into `q`: each {min, max,
// name}, min <= max, no two overlapping, names unique.
void ReadBands(YamlReader& r, const YAML::Node& root, v1::Questionnaire& q) {
  const YAML::Node bands = root["bands"];
  if (bands && !bands.IsSequence()) {
    r.Error(bands, "bands", "must be a list of {min, max, name}");
  } else if (bands) {
    std::set<std::string> names;
    for (size_t i = 0; i < bands.size(); ++i) {
      std::string path = YamlReader::Join("bands", i);
      if (!r.ExpectMap(bands[i], path, false)) continue;
      r.ExpectKeys(bands[i], path, {"min", "max", "name"});
      for (const char* k : {"min", "max"}) {
        if (!bands[i][k])
          r.Error(bands[i], YamlReader::Join(path, k), "is required");
      }
      v1::ScoreBand* b = q.add_bands();
      b->set_min(static_cast<int32_t>(
          r.Int(bands[i], path, "min", 0, -100000, 100000)));
      b->set_max(static_cast<int32_t>(
          r.Int(bands[i], path, "max", 0, -100000, 100000)));
      b->set_name(r.String(bands[i], path, "name", "", true));
      if (b->min() > b->max()) {
        r.Error(bands[i], path,
                absl::StrCat("min ", b->min(), " is above max ", b->max()));
      }
      for (int j = 0; j + 1 < q.bands_size(); ++j) {
        const v1::ScoreBand& o = q.bands(j);
        if (b->min() <= o.max() && o.min() <= b->max()) {
          r.Error(bands[i], path,
                  absl::StrCat(b->min(), "-", b->max(), " overlaps band \"",
                               o.name(), "\" (", o.min(), "-", o.max(), ")"));
        }
      }
      if (!b->name().empty() && !names.insert(b->name()).second) {
        r.Error(bands[i]["name"], YamlReader::Join(path, "name"),
                absl::StrCat("\"", b->name(), "\" names an earlier band"));
      }
    }
  }
}

// ReadFlag reads the flag at `node` (`path`: flags[i]) into `in`: its
// condition must parse and name only items of the questionnaire, and the
// flag is declared with the scores it reads. `names` holds the names of
// the earlier flags.
void ReadFlag(YamlReader& r, const YAML::Node& node, const std::string& path,
              std::set<std::string>& names, Instrument& in) {
  const v1::Questionnaire& q = in.questionnaire;
  if (!r.ExpectMap(node, path, false)) return;
  r.ExpectKeys(node, path, {"name", "when", "title", "safety_critical"});
  Flag f;
  f.name = r.String(node, path, "name", "", true);
  if (node["name"] && !f.name.empty()) {
    if (!IsIdentifier(f.name, false)) {
      r.Error(node["name"], YamlReader::Join(path, "name"),
              "must be letters, digits or '_'");
    } else if (!names.insert(f.name).second) {
      r.Error(node["name"], YamlReader::Join(path, "name"),
              absl::StrCat("\"", f.name, "\" names an earlier flag"));
    }
  }
  std::string when = r.String(node, path, "when", "", true);
  if (!node["when"] || when.empty()) return;
  absl::StatusOr<Condition> c = ParseCondition(when);
  if (!c.ok()) {
    r.Error(node["when"], YamlReader::Join(path, "when"), c.status().message());
    return;
  }
  for (const Comparison& cmp : c->terms) {
    if (cmp.item.empty()) continue;
    bool known = false;
    for (const auto& item : q.items()) known = known || item.id() == cmp.item;
    if (!known) {
      r.Error(node["when"], YamlReader::Join(path, "when"),
              absl::StrCat("item(\"", cmp.item, "\"): ", q.id(),
                           " has no item \"", cmp.item, "\""));
    }
  }
  f.when = *std::move(c);
  // Declared in ListInstruments: a safety-critical flag engages the
  // engine's safety floor (docs/clinical-rules.md).
  v1::FlagDefinition* declared = in.questionnaire.add_flag_definitions();
  declared->set_name(absl::StrCat(q.id(), ".", f.name));
  declared->set_title(r.String(node, path, "title", ""));
  declared->set_safety_critical(r.Bool(node, path, "safety_critical", false));
  std::set<std::string> reads;
  for (const Comparison& cmp : f.when.terms) {
    reads.insert(cmp.item.empty() ? absl::StrCat(q.id(), ".total")
                                  : ItemScoreName(q.id(), cmp.item));
  }
  for (const std::string& score : reads) declared->add_scores(score);
  in.flags.push_back(std::move(f));
}

// ReadFlags reads the optional `flags` list into `in`.
void ReadFlags(YamlReader& r, const YAML::Node& root, Instrument& in) {
  const YAML::Node flags = root["flags"];
  if (flags && !flags.IsSequence()) {
    r.Error(flags, "flags", "must be a list of {name, when}");
  } else if (flags) {
    std::set<std::string> names;
    for (size_t i = 0; i < flags.size(); ++i) {
      ReadFlag(r, flags[i], YamlReader::Join("flags", i), names, in);
    }
  }
}

// ReadInstrument validates one file; problems go to `r`.
std::optional<Instrument> ReadInstrument(YamlReader& r,
                                         absl::string_view text) {
  const YAML::Node root = r.Parse(text);
  if (!r.ok() || !r.ExpectMap(root, "", false)) return std::nullopt;
  r.ExpectKeys(root, "",
               {"id", "version", "title", "preamble", "recall_period",
                "copyright", "items", "bands", "flags"});
  Instrument in;
  v1::Questionnaire& q = in.questionnaire;
  q.set_id(r.String(root, "", "id", "", true));
  if (root["id"] && !q.id().empty() && !IsIdentifier(q.id(), true)) {
    r.Error(root["id"], "id",
            "must be letters, digits, '_' or '-' (it prefixes score names)");
  }
  q.set_version(
      static_cast<int32_t>(r.Int(root, "", "version", 1, 1, 1'000'000)));
  if (!root["version"]) r.Error(root, "version", "is required");
  q.set_title(r.String(root, "", "title", "", true));
  q.set_preamble(r.String(root, "", "preamble", ""));
  q.set_recall_period(r.String(root, "", "recall_period", ""));
  q.set_copyright(r.String(root, "", "copyright", ""));

  ReadItems(r, root, q);
  ReadBands(r, root, q);
  ReadFlags(r, root, in);
  if (!r.ok()) return std::nullopt;
  return in;
}

class YamlInstruments final : public ipsrt::plugin::Plugin {
 public:
  absl::StatusOr<pv1::DescribeResponse> Describe() override {
    pv1::DescribeResponse d;
    d.set_summary("Clinician-defined questionnaires from YAML files");
    return d;
  }

  // Reads every file before accepting any: all diagnostics or nothing.
  absl::Status Configure(const pv1::ConfigureRequest& request) override {
    std::vector<std::string> directories;
    for (const auto& [key, value] : request.config().fields()) {
      if (key != "directories") {
        return absl::InvalidArgumentError(absl::StrCat(
            "config.", key, ": unknown setting (known: directories)"));
      }
      if (!value.has_list_value()) {
        return absl::InvalidArgumentError(
            "config.directories: must be a list of directory paths");
      }
      for (int i = 0; i < value.list_value().values_size(); ++i) {
        const auto& v = value.list_value().values(i);
        if (!v.has_string_value() || v.string_value().empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "config.directories[", i, "]: must be a directory path"));
        }
        std::filesystem::path p(v.string_value());
        if (p.is_relative() && !request.config_dir().empty()) {
          p = std::filesystem::path(request.config_dir()) / p;
        }
        directories.push_back(p.lexically_normal().string());
      }
    }
    if (directories.empty()) {
      return absl::InvalidArgumentError(
          "config.directories: name at least one directory of instrument "
          "files");
    }
    std::vector<std::string> files;
    for (size_t i = 0; i < directories.size(); ++i) {
      std::error_code ec;
      if (!std::filesystem::is_directory(directories[i], ec)) {
        return absl::InvalidArgumentError(absl::StrCat("config.directories[", i,
                                                       "]: ", directories[i],
                                                       " is not a directory"));
      }
      std::vector<std::string> here;
      for (const auto& entry :
           std::filesystem::directory_iterator(directories[i], ec)) {
        std::string ext = entry.path().extension().string();
        if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
          here.push_back(entry.path().string());
        }
      }
      std::sort(here.begin(), here.end());
      files.insert(files.end(), here.begin(), here.end());
    }
    std::vector<std::string> diagnostics;
    std::map<std::string, std::map<int, Instrument>> loaded;
    std::map<std::string, std::string> defined_in;  // id@version -> file
    for (const std::string& file : files) {
      std::ifstream in(file, std::ios::binary);
      std::stringstream text;
      text << in.rdbuf();
      if (!in.good() && !in.eof()) {
        diagnostics.push_back(absl::StrCat(file, ": error: cannot read"));
        continue;
      }
      YamlReader r(file);
      std::optional<Instrument> instrument = ReadInstrument(r, text.str());
      for (const auto& d : r.SortedDiagnostics()) {
        diagnostics.push_back(d.ToString());
      }
      if (!instrument.has_value()) continue;
      const v1::Questionnaire& q = instrument->questionnaire;
      std::string key = absl::StrCat(q.id(), "@", q.version());
      auto [it, fresh] = defined_in.emplace(key, file);
      if (!fresh) {
        diagnostics.push_back(absl::StrCat(
            file, ": error: id: ", key, " is already defined in ", it->second));
        continue;
      }
      loaded[q.id()][q.version()] = *std::move(instrument);
    }
    if (!diagnostics.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.directories: instrument definitions refused:\n",
                       absl::StrJoin(diagnostics, "\n")));
    }
    instruments_ = std::move(loaded);
    return absl::OkStatus();
  }

  absl::StatusOr<pv1::ListInstrumentsResponse> ListInstruments(
      const pv1::ListInstrumentsRequest&) override {
    pv1::ListInstrumentsResponse out;
    for (const auto& [id, versions] : instruments_) {
      for (const auto& [version, in] : versions) {
        *out.add_instruments() = in.questionnaire;
      }
    }
    return out;
  }

  absl::StatusOr<pv1::ScoreResponseResponse> ScoreResponse(
      const pv1::ScoreResponseRequest& request) override {
    const v1::QuestionnaireResponse& r = request.response();
    auto it = instruments_.find(r.questionnaire_id());
    if (it == instruments_.end()) {
      return absl::NotFoundError(
          absl::StrCat("questionnaire_id: \"", r.questionnaire_id(),
                       "\" is not an instrument of this plugin"));
    }
    const std::map<int, Instrument>& versions = it->second;
    const Instrument* in = &versions.rbegin()->second;
    if (r.questionnaire_version() != 0) {
      auto v = versions.find(r.questionnaire_version());
      if (v == versions.end()) {
        std::vector<int> known;
        for (const auto& [n, unused] : versions) known.push_back(n);
        return absl::InvalidArgumentError(
            absl::StrCat("questionnaire_version: ", r.questionnaire_id(),
                         " has no version ", r.questionnaire_version(),
                         " (loaded: ", absl::StrJoin(known, ", "), ")"));
      }
      in = &v->second;
    }
    if (request.days_size() > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "days: ", r.questionnaire_id(), " takes answers, not diary days"));
    }
    const v1::Questionnaire& q = in->questionnaire;
    std::map<std::string, const v1::QuestionnaireItem*> items;
    for (const auto& item : q.items()) items[item.id()] = &item;
    for (const auto& [id, value] : r.answers()) {
      auto item = items.find(id);
      if (item == items.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "answers[\"", id, "\"]: ", q.id(), " has no item \"", id, "\""));
      }
      std::vector<int> values;
      bool ok = false;
      for (const auto& o : item->second->options()) {
        values.push_back(o.value());
        ok = ok || o.value() == value;
      }
      if (!ok) {
        return absl::InvalidArgumentError(absl::StrCat(
            "answers[\"", id, "\"]: ", value,
            " is not one of the answer values ", absl::StrJoin(values, ", ")));
      }
    }
    pv1::ScoreResponseResponse out;
    int total = 0;
    for (const auto& item : q.items()) {
      auto a = r.answers().find(item.id());
      if (a == r.answers().end()) {
        if (item.required()) {
          return absl::InvalidArgumentError(
              absl::StrCat("answers[\"", item.id(), "\"]: required item of ",
                           q.id(), " is missing"));
        }
        continue;
      }
      if (!item.scored()) continue;
      total += a->second;
      (*out.mutable_scores())[ItemScoreName(q.id(), item.id())] = a->second;
    }
    (*out.mutable_scores())[absl::StrCat(q.id(), ".total")] = total;
    for (const auto& b : q.bands()) {
      if (total >= b.min() && total <= b.max()) out.set_band(b.name());
    }
    for (const Flag& f : in->flags) {
      bool all = true, any = false;
      for (const Comparison& cmp : f.when.terms) {
        bool holds = false;
        if (cmp.item.empty()) {
          holds = Compare(total, cmp.op, cmp.value);
        } else {
          auto a = r.answers().find(cmp.item);
          // An unanswered (optional) item satisfies no comparison.
          holds =
              a != r.answers().end() && Compare(a->second, cmp.op, cmp.value);
        }
        all = all && holds;
        any = any || holds;
      }
      if (f.when.any ? any : all)
        out.add_flags(absl::StrCat(q.id(), ".", f.name));
    }
    return out;
  }

 private:
  // Set once by Configure, before any other call; read-only afterwards.
  std::map<std::string, std::map<int, Instrument>> instruments_;
};

}  // namespace

IPSRT_PLUGIN(YamlInstruments, "yaml-instruments", "1.0.0",
             IPSRT_KIND_QUESTIONNAIRE)
