// The hardened YAML entry point (common/yaml_reader.h): every input the
// project reads goes through YamlReader::Parse, so these cases hold for
// templates, instrument YAML, scenarios and ipsrtd.yaml alike.
#include "common/yaml_reader.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ipsrt/config.h"

namespace ipsrt {
namespace {

using ::testing::HasSubstr;

// Diagnostics of parsing `text` as "f.yaml", one string each.
std::vector<std::string> Problems(absl::string_view text,
                                  YamlLimits limits = YamlLimits()) {
  YamlReader r("f.yaml", limits);
  YAML::Node root = r.Parse(text);
  std::vector<std::string> out;
  for (const YamlDiagnostic& d : r.SortedDiagnostics()) {
    out.push_back(d.ToString());
  }
  if (out.empty()) {
    EXPECT_TRUE(root.IsDefined());
  }
  return out;
}

TEST(YamlReaderTest, PlainDocumentsWithAnchorsAndQuotedBangsAreRead) {
  EXPECT_THAT(Problems("a: &x {b: 1}\nc: *x\nd: \"!goal.set\"\ne: '!x'\n"),
              ::testing::IsEmpty());
  EXPECT_THAT(Problems("--- \nid: x\n...\n"), ::testing::IsEmpty());
  EXPECT_THAT(Problems("\xEF\xBB\xBFid: caf\xC3\xA9\n"), ::testing::IsEmpty());
}

TEST(YamlReaderTest, BytesThatAreNotUtf8AreRefusedWithTheirPosition) {
  // A Latin-1 "í" (0xED) in a title.
  EXPECT_THAT(Problems("id: x\ntitle: Evaluaci\xEDn\n"),
              ::testing::ElementsAre(
                  "f.yaml:2:16: error: byte 0xED is not valid UTF-8 (save the "
                  "file as UTF-8; Latin-1 and Windows code pages are not "
                  "read)"));
  // Overlong form, surrogate, truncated sequence.
  EXPECT_THAT(Problems("a: \xC0\xAF\n"), ::testing::SizeIs(1));
  EXPECT_THAT(Problems("a: \xED\xA0\x80\n"), ::testing::SizeIs(1));
  EXPECT_THAT(Problems("a: \xE2\x82"), ::testing::SizeIs(1));
  EXPECT_THAT(Problems("a: b\x01\n"),
              ::testing::ElementsAre("f.yaml:1:5: error: control character "
                                     "U+0001 is not allowed in YAML"));
}

TEST(YamlReaderTest, TagsAreRefusedOnEveryNodeWithThePath) {
  EXPECT_THAT(
      Problems("stages:\n  - exit:\n      - when: !goal.set && x\n"),
      ::testing::ElementsAre(
          "f.yaml:3:15: error: stages[0].exit[0].when: YAML tag \"!goal.set\" "
          "is not allowed: a value that starts with '!' must be quoted (when: "
          "\"!goal.set ...\")"));
  EXPECT_THAT(Problems("a: !!str 1\n"),
              ::testing::ElementsAre(HasSubstr("a: YAML tag \"!!str\"")));
  EXPECT_THAT(Problems("a: !m {b: 1}\nc: !s [1]\n"), ::testing::SizeIs(2));
}

TEST(YamlReaderTest, ASecondDocumentIsRefused) {
  EXPECT_THAT(Problems("id: a\n---\nid: b\n"),
              ::testing::ElementsAre(
                  HasSubstr("f.yaml:2:1: error: a second YAML document")));
}

TEST(YamlReaderTest, SizeDepthAndNodeCountAreBounded) {
  YamlLimits small;
  small.max_bytes = 10;
  EXPECT_THAT(Problems("a: 01234567890\n", small),
              ::testing::ElementsAre("f.yaml:1:1: error: the file is 15 "
                                     "bytes; the limit is 10 bytes"));
  std::string deep = std::string(100, '[') + std::string(100, ']');
  EXPECT_THAT(Problems(deep), ::testing::ElementsAre(HasSubstr(
                                  "nests deeper than 64 levels (the limit)")));
  // 100,000 levels: refused by the same limit, quickly, without recursing.
  EXPECT_THAT(Problems(std::string(100000, '[')),
              ::testing::ElementsAre(HasSubstr("nests deeper than 64")));
  YamlLimits few;
  few.max_nodes = 5;
  EXPECT_THAT(Problems("[1, 2, 3, 4, 5, 6]", few),
              ::testing::ElementsAre(HasSubstr("more than 5 YAML nodes")));
}

TEST(YamlReaderTest, ARecursiveAliasIsRefused) {
  EXPECT_THAT(Problems("plugins:\n  - path: a\n  - config: &a {x: *a}\n"),
              ::testing::ElementsAre(
                  "f.yaml:3:20: error: plugins[1].config.x: alias *a refers to "
                  "the node that contains it (a recursive alias is not "
                  "allowed)"));
}

// Nine lines of nested aliases: 10^8 nodes when expanded.
constexpr char kLaughs[] = R"(a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
)";

TEST(YamlReaderTest, NestedAliasExpansionIsBounded) {
  EXPECT_THAT(Problems(kLaughs),
              ::testing::ElementsAre(HasSubstr(
                  "aliases expand to more than 10000 nodes (the limit")));
  // A few aliases well under the limit are fine.
  EXPECT_THAT(Problems("a: &a [1, 2]\nb: [*a, *a]\n"), ::testing::IsEmpty());
}

// The two configurations of issue #21 that crashed or exhausted ipsrtd.
TEST(YamlReaderTest, ConfigWithRecursiveOrExplodingAliasesIsRefused) {
  absl::StatusOr<Config> c = ParseConfig(R"(server:
  listen: 127.0.0.1:1
store:
  sqlite:
    path: x.db
plugins:
  - path: libipsrt_core_instruments.so
  - path: libx.so
    config: &a {x: *a}
)",
                                         "ipsrtd.yaml", "/");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(),
              HasSubstr("ipsrtd.yaml:9:20: error: plugins[1].config.x: alias "
                        "*a refers to the node that contains it"));
  c = ParseConfig(
      absl::StrCat("server:\n  listen: 127.0.0.1:1\nstore:\n  sqlite:\n"
                   "    path: x.db\nplugins:\n  - path: libx.so\n    config:\n",
                   kLaughs),
      "ipsrtd.yaml", "/");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("aliases expand to more than"));
}

}  // namespace
}  // namespace ipsrt
