// Damaging a SQLite database on purpose, for fault tests: find a leaf page
// of a table (through the dbstat virtual table) and overwrite it with
// zeros, as a failing disk or a stray write would.
//
// Example:
//   absl::StatusOr<int64_t> page = MiddleLeafPage(path, "events");
//   ASSERT_TRUE(ZeroPage(path, *page).ok());
#ifndef IPSRT_TESTS_TESTING_SQLITE_PAGES_H_
#define IPSRT_TESTS_TESTING_SQLITE_PAGES_H_

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace ipsrt::testing {

// LeafPages lists the leaf pages of `table` (or index) in `path`, in page
// order, and the database's page size. The database must be closed by
// every writer (its WAL checkpointed) for the pages to be in the file.
inline absl::StatusOr<std::vector<int64_t>> LeafPages(const std::string& path,
                                                      const std::string& table,
                                                      int64_t* page_size) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
      SQLITE_OK) {
    sqlite3_close(db);
    return absl::FailedPreconditionError(absl::StrCat("cannot open ", path));
  }
  std::vector<int64_t> pages;
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &stmt, nullptr);
  if (sqlite3_step(stmt) == SQLITE_ROW) {
    *page_size = sqlite3_column_int64(stmt, 0);
  }
  sqlite3_finalize(stmt);
  int rc = sqlite3_prepare_v2(db,
                              "SELECT pageno FROM dbstat WHERE name = ? AND "
                              "pagetype = 'leaf' ORDER BY pageno",
                              -1, &stmt, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(stmt, 1, table.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      pages.push_back(sqlite3_column_int64(stmt, 0));
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  if (rc != SQLITE_OK) {
    return absl::UnimplementedError("this SQLite has no dbstat table");
  }
  return pages;
}

// MiddleLeafPage is the leaf page of `table` in the middle of its list.
inline absl::StatusOr<int64_t> MiddleLeafPage(const std::string& path,
                                              const std::string& table) {
  int64_t page_size = 0;
  absl::StatusOr<std::vector<int64_t>> pages =
      LeafPages(path, table, &page_size);
  if (!pages.ok()) return pages.status();
  if (pages->empty()) {
    return absl::NotFoundError(absl::StrCat(table, " has no leaf page"));
  }
  return (*pages)[pages->size() / 2];
}

// ZeroPage overwrites page `pageno` (1-based) of `path` with zeros.
inline absl::Status ZeroPage(const std::string& path, int64_t pageno) {
  int64_t page_size = 0;
  absl::StatusOr<std::vector<int64_t>> ignored =
      LeafPages(path, "sqlite_schema", &page_size);
  if (!ignored.ok()) return ignored.status();
  if (page_size <= 0) return absl::InternalError("no page size");
  int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open ", path));
  std::string zeros(static_cast<size_t>(page_size), '\0');
  ssize_t n = ::pwrite(fd, zeros.data(), zeros.size(),
                       static_cast<off_t>((pageno - 1) * page_size));
  ::fsync(fd);
  ::close(fd);
  if (n != page_size) return absl::InternalError("short write");
  return absl::OkStatus();
}

}  // namespace ipsrt::testing

#endif  // IPSRT_TESTS_TESTING_SQLITE_PAGES_H_
