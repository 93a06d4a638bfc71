// EnrollmentCache: the most recently used enrollment rows of a store that
// has one writer, so that reading an enrollment (GetEnrollment, and the
// load before every event) skips the database read and decompression.
//
// Coherence rests on the writer: after each transaction commits (and is
// durable), it publishes the rows that transaction updated, replacing what
// is cached (a new enrollment is cached when first read). A reader that
// missed fills the cache with the row it read from the database only if
// no enrollment commit was published between its ticket (taken before the
// read) and its fill; a row that a later commit superseded can therefore
// never be cached. When the writer cannot say
// what a transaction changed (a failed COMMIT), it calls Clear.
//
// Only for a database that no other process writes (SQLite with its lock
// file); PostgreSQL replicas write the same rows and have no cache.
// Bounded by bytes (the rows' strings plus a fixed overhead), least recently
// used out first. Thread-safe.
//
// Example (a reader):
//   uint64_t ticket;
//   if (std::optional<EnrollmentRow> row = cache.Lookup(t, id, &ticket)) {
//     return *row;
//   }
//   absl::StatusOr<EnrollmentRow> row = ReadFromDatabase(t, id);
//   if (row.ok()) cache.Fill(*row, ticket);
#ifndef IPSRT_STORE_ENROLLMENT_CACHE_H_
#define IPSRT_STORE_ENROLLMENT_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "ipsrt/store.h"

namespace ipsrt {

class EnrollmentCache {
 public:
  // `capacity_bytes` > 0.
  explicit EnrollmentCache(size_t capacity_bytes);

  EnrollmentCache(const EnrollmentCache&) = delete;
  EnrollmentCache& operator=(const EnrollmentCache&) = delete;

  // Ticket is taken before a database read whose row may be Filled.
  uint64_t Ticket() const;

  // Lookup returns a copy of the cached row, or nullopt; on a miss it also
  // sets `*ticket` (when given) as Ticket would, under the same lock, so a
  // read that misses takes the cache's mutex once.
  std::optional<EnrollmentRow> Lookup(absl::string_view tenant,
                                      absl::string_view id,
                                      uint64_t* ticket = nullptr);

  // Fill caches `row`, read from the database after Ticket returned
  // `ticket`, unless a commit was published since (the row may be older
  // than what that commit wrote).
  void Fill(const EnrollmentRow& row, uint64_t ticket);

  // A row one committed transaction wrote: created (the whole row) or
  // updated (every column but create_time, which an update keeps).
  struct Written {
    EnrollmentRow row;
    bool created = false;
  };
  // Publish records the rows of one committed group of transactions that
  // changed enrollments, and ends every older ticket; `rows` may be empty
  // (the writer does not publish new enrollments, but their commit still
  // ends the tickets of reads that found nothing).
  // Times are kept at the database's precision (microseconds), so a cached
  // row equals the row a read would return.
  void Publish(std::vector<Written> rows);

  // Clear drops every row and ends every ticket.
  void Clear();

  // Hits and misses since construction, rows and bytes held now.
  using Counts = StoreStats::EnrollmentCache;
  Counts counts() const;

 private:
  struct Entry {
    std::string key;
    EnrollmentRow row;
    size_t bytes = 0;
  };
  using Lru = std::list<Entry>;  // most recently used first

  static std::string Key(absl::string_view tenant, absl::string_view id);
  static size_t Bytes(const EnrollmentRow& row);
  void Put(EnrollmentRow row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Evict() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t capacity_;
  mutable absl::Mutex mu_;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  Lru lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Lru::iterator> index_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ipsrt

#endif  // IPSRT_STORE_ENROLLMENT_CACHE_H_
