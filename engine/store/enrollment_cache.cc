#include "store/enrollment_cache.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace ipsrt {
namespace {

// Bookkeeping per row beyond its strings: the list node, the index slot,
// the key and the row's fixed fields, roughly.
constexpr size_t kEntryOverhead = 256;

absl::Time AtMicros(absl::Time t) {
  return absl::FromUnixMicros(absl::ToUnixMicros(t));
}

}  // namespace

EnrollmentCache::EnrollmentCache(size_t capacity_bytes)
    : capacity_(capacity_bytes) {}

std::string EnrollmentCache::Key(absl::string_view tenant,
                                 absl::string_view id) {
  // Length-prefixed: no tenant and id pair can spell another's key.
  return absl::StrCat(tenant.size(), ":", tenant, id);
}

size_t EnrollmentCache::Bytes(const EnrollmentRow& r) {
  return kEntryOverhead + 2 * (r.tenant.size() + r.id.size()) +
         r.patient_ref.size() + r.workflow_id.size() + r.stage.size() +
         r.clinician_ref.size() + r.snapshot.size();
}

uint64_t EnrollmentCache::Ticket() const {
  absl::MutexLock lock(&mu_);
  return epoch_;
}

std::optional<EnrollmentRow> EnrollmentCache::Lookup(absl::string_view tenant,
                                                     absl::string_view id,
                                                     uint64_t* ticket) {
  std::string key = Key(tenant, id);
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++misses_;
    if (ticket != nullptr) *ticket = epoch_;
    return std::nullopt;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->row;
}

void EnrollmentCache::Fill(const EnrollmentRow& row, uint64_t ticket) {
  absl::MutexLock lock(&mu_);
  if (ticket != epoch_) return;
  Put(row);
}

void EnrollmentCache::Publish(std::vector<Written> rows) {
  absl::MutexLock lock(&mu_);
  ++epoch_;
  for (Written& w : rows) {
    EnrollmentRow& row = w.row;
    row.update_time = AtMicros(row.update_time);
    if (w.created) {
      row.create_time = AtMicros(row.create_time);
      Put(std::move(row));
      continue;
    }
    // An update keeps the stored create_time: taken from the cached row,
    // or, when none is cached, the row is left to the next read.
    auto it = index_.find(Key(row.tenant, row.id));
    if (it == index_.end()) continue;
    row.create_time = it->second->row.create_time;
    Put(std::move(row));
  }
}

void EnrollmentCache::Clear() {
  absl::MutexLock lock(&mu_);
  ++epoch_;
  index_.clear();
  lru_.clear();
  bytes_ = 0;
}

EnrollmentCache::Counts EnrollmentCache::counts() const {
  absl::MutexLock lock(&mu_);
  return Counts{hits_, misses_, static_cast<int64_t>(index_.size()),
                static_cast<int64_t>(bytes_)};
}

void EnrollmentCache::Put(EnrollmentRow row) {
  std::string key = Key(row.tenant, row.id);
  size_t bytes = Bytes(row);
  auto it = index_.find(key);
  if (it != index_.end()) {
    bytes_ -= it->second->bytes;
    lru_.erase(it->second);
    index_.erase(it);
  }
  // A row larger than the whole cache is not kept (and not left stale).
  if (bytes > capacity_) return;
  lru_.push_front(Entry{key, std::move(row), bytes});
  index_.emplace(std::move(key), lru_.begin());
  bytes_ += bytes;
  Evict();
}

void EnrollmentCache::Evict() {
  while (bytes_ > capacity_ && !lru_.empty()) {
    Entry& last = lru_.back();
    bytes_ -= last.bytes;
    index_.erase(last.key);
    lru_.pop_back();
  }
}

}  // namespace ipsrt
