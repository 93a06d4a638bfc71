// The schema is described once (store/migrations.h): each dialect's
// migrations must end with exactly the tables, columns, types, nullability
// and primary keys that SchemaTables() lists, which `ipsrt store copy`
// copies and digests.
#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "store/migrations.h"
#include "tests/store/store_backends.h"

namespace ipsrt {
namespace {

// Columns as "name type[ null]" sorted by name; type is int, text or bytes.
std::string Expected(const SchemaTable& t) {
  std::vector<std::string> columns;
  for (const SchemaColumn& c : t.columns) {
    const char* type = c.type == SchemaColumn::Type::kInt    ? "int"
                       : c.type == SchemaColumn::Type::kText ? "text"
                                                             : "bytes";
    columns.push_back(
        absl::StrCat(c.name, " ", type, c.nullable ? " null" : ""));
  }
  std::sort(columns.begin(), columns.end());
  return absl::StrJoin(columns, ",");
}

std::string ExpectedTables() {
  std::vector<std::string> names;
  for (const SchemaTable& t : SchemaTables()) names.push_back(t.name);
  std::sort(names.begin(), names.end());
  return absl::StrJoin(names, ",");
}

// The catalog queries of each dialect, answering in Expected()'s form.
struct SqliteCatalog {
  static std::string Tables() {
    return "SELECT group_concat(name, ',') FROM (SELECT name FROM "
           "sqlite_master WHERE type = 'table' AND name NOT IN "
           "('schema_migrations', 'sqlite_sequence') ORDER BY name)";
  }
  static std::string Columns(const std::string& table) {
    return absl::StrCat(
        "SELECT group_concat(d, ',') FROM (SELECT name || ' ' || CASE type "
        "WHEN 'INTEGER' THEN 'int' WHEN 'TEXT' THEN 'text' WHEN 'BLOB' THEN "
        "'bytes' ELSE type END || CASE WHEN \"notnull\" OR pk > 0 THEN '' "
        "ELSE ' null' END AS d FROM pragma_table_info('",
        table, "') ORDER BY name)");
  }
  // The declared primary key; or else the columns of the table's one UNIQUE
  // constraint, for a table kept in rowid order (schema 7's requests) or
  // whose rowid is its number `key` (schema 8's enrollments); or else `key`
  // itself (request_keys).
  static std::string Key(const std::string& table) {
    auto pk = [&](const char* where) {
      return absl::StrCat(
          "(SELECT group_concat(name, ',') FROM (SELECT name FROM "
          "pragma_table_info('",
          table, "') WHERE pk > 0", where, " ORDER BY pk))");
    };
    return absl::StrCat("SELECT COALESCE(", pk(" AND name <> 'key'"),
                        ", (SELECT group_concat(c.name, ',') FROM "
                        "pragma_index_list('",
                        table,
                        "') l, pragma_index_info(l.name) c WHERE l.origin = "
                        "'u'), ",
                        pk(""), ")");
  }
};

struct PostgresCatalog {
  static std::string Tables() {
    return "SELECT string_agg(table_name, ',' ORDER BY table_name COLLATE "
           "\"C\") FROM information_schema.tables WHERE table_schema = "
           "'public' AND table_name <> 'schema_migrations'";
  }
  static std::string Columns(const std::string& table) {
    return absl::StrCat(
        "SELECT string_agg(column_name || ' ' || CASE data_type WHEN 'bigint' "
        "THEN 'int' WHEN 'integer' THEN 'int' WHEN 'text' THEN 'text' WHEN "
        "'bytea' THEN 'bytes' ELSE data_type END || CASE is_nullable WHEN "
        "'YES' THEN ' null' ELSE '' END, ',' ORDER BY column_name COLLATE "
        "\"C\") FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name = '",
        table, "'");
  }
  static std::string Key(const std::string& table) {
    return absl::StrCat(
        "SELECT string_agg(a.attname, ',' ORDER BY array_position(i.indkey, "
        "a.attnum)) FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
        "i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '",
        table, "'::regclass AND i.indisprimary");
  }
};

template <typename Backend>
class SchemaTest : public ::testing::Test {};

TYPED_TEST_SUITE(SchemaTest, testing::StoreBackends, testing::StoreBackendName);

TYPED_TEST(SchemaTest, MigrationsEndWithTheDescribedTables) {
  using Catalog =
      std::conditional_t<std::is_same_v<TypeParam, testing::SqliteBackend>,
                         SqliteCatalog, PostgresCatalog>;
  TypeParam backend;
  absl::StatusOr<std::unique_ptr<Store>> store = backend.Open();
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->SchemaVersion(), kSchemaVersion);
  EXPECT_EQ(backend.Scalar(Catalog::Tables()), ExpectedTables());
  for (const SchemaTable& t : SchemaTables()) {
    SCOPED_TRACE(t.name);
    EXPECT_EQ(backend.Scalar(Catalog::Columns(t.name)), Expected(t));
    EXPECT_EQ(backend.Scalar(Catalog::Key(t.name)), absl::StrJoin(t.key, ","));
  }
}

TEST(SchemaVersionTest, BothDialectsEndAtTheDescribedVersion) {
  EXPECT_EQ(SqliteMigrations().back().version, kSchemaVersion);
  EXPECT_EQ(PostgresMigrations().back().version, kSchemaVersion);
  ASSERT_EQ(SqliteMigrations().size(), PostgresMigrations().size());
  for (size_t i = 0; i < SqliteMigrations().size(); ++i) {
    EXPECT_EQ(SqliteMigrations()[i].version, PostgresMigrations()[i].version);
  }
}

}  // namespace
}  // namespace ipsrt
