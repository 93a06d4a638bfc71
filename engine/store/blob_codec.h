// How the stores keep their blobs (enrollment snapshots, request responses,
// event payloads) on disk: compressed when that makes them smaller, as they
// are otherwise. The store packs on write and unpacks on read, so everything
// above it (the event hash chain, its checks, replay) sees the serialized
// bytes only. Both stores read every form, so that a database copied from
// SQLite to PostgreSQL (`ipsrt store copy`, byte for byte) reads the same.
//
// Values are compressed with a preset dictionary. From schema 9 on they are
// written with zstd and dictionary 2 (blob_dictionary2.inc: dictionary 1's
// content with entropy tables), which it digests once per process; values
// written before (zlib's deflate with dictionary 1, blob_dictionary.inc,
// which zlib names in each stream by its Adler-32, or without one: schema
// 4's snapshots and responses) still read. Both dictionaries are frozen.
//
// Stored form: a value whose first byte is not 0x00 is the value itself
// (every serialized protobuf message, which never starts with a zero tag);
// 0x00 0x03 <varint size> <zstd frame without its 4-byte magic number> is a
// compressed value (dictionary 2); 0x00 0x01 <varint size>
// <zlib stream> a deflated one (schemas 4 to 8); 0x00 0x00 <value> a value
// that itself starts with 0x00.
#ifndef IPSRT_STORE_BLOB_CODEC_H_
#define IPSRT_STORE_BLOB_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ipsrt {

// How long a packed value stays as written: a snapshot is overwritten by
// the enrollment's next event, so it is packed faster; what is kept (event
// payloads, request records) is packed smaller.
enum class BlobLifetime { kKept, kOverwritten };

// PackBlob is the stored form of `value`: compressed (zstd with dictionary
// 2; level 4 when kept, 3 when overwritten) when the value is 64 bytes or
// more and that saves space.
std::string PackBlob(absl::string_view value,
                     BlobLifetime lifetime = BlobLifetime::kKept);

// UnpackBlob is the value of a stored form; DATA_LOSS naming `what` when a
// compressed value cannot be decompressed to its recorded size.
absl::StatusOr<std::string> UnpackBlob(absl::string_view stored,
                                       absl::string_view what);

// BlobDictionary is dictionary 1's bytes (blob_dictionary.inc: zlib's
// preset dictionary, and dictionary 2's content); BlobZstdDictionary is
// dictionary 2 (blob_dictionary2.inc), a zstd dictionary. Both frozen.
absl::string_view BlobDictionary();
absl::string_view BlobZstdDictionary();

// BlobDictionaryId is the Adler-32 of the preset dictionary, the id zlib
// writes into the streams deflated with it.
uint32_t BlobDictionaryId();

// --- Small values (schema 5). ---

// StoredDigest is how a SHA-256 digest column (event and audit hashes, a
// request's payload hash) keeps `hex`: a digest in lowercase hex as its 32
// bytes; any other value (the empty "no previous hash", or a test's
// placeholder) as given. CheckDigest refuses the one value this cannot
// tell apart on reading: a 32-byte value that is not a digest in hex.
std::string StoredDigest(absl::string_view hex);
absl::Status CheckDigest(absl::string_view value, absl::string_view what);

// DigestFromStored is the value StoredDigest was given: 32 bytes as
// lowercase hex, anything else (a row from before schema 5 not converted,
// or a placeholder) as it is.
std::string DigestFromStored(absl::string_view stored);

// A request record keeps its payload hash as the first 16 bytes of the
// SHA-256 (schema 8): it is only compared with a retry's under the same
// request id, for which 128 bits are ample. StoredRequestHash keeps a
// digest in lowercase hex so, anything else as given; RequestHashFromStored
// reads 16 bytes as 32 hex digits (a prefix of the digest, for
// SamePayloadHash in ipsrt/store.h) and 32 bytes (a record written before
// schema 8) as the whole digest. CheckRequestHash refuses the values this
// cannot tell apart on reading: 16 or 32 bytes that are not a digest in hex.
std::string StoredRequestHash(absl::string_view hex);
// A request record's method is kept as "/" and a letter for the methods
// that write records ("/s" is SubmitEvent; schema 8), any other as it is
// (behind "=" when it starts with "=" or "/"). Records written before keep
// the whole name and read as before.
std::string StoredRequestMethod(absl::string_view method);
std::string RequestMethodFromStored(absl::string_view stored);
std::string RequestHashFromStored(absl::string_view stored);
absl::Status CheckRequestHash(absl::string_view value);

// An outbox row's idempotency key is its enrollment's name
// ("tenants/{tenant}/enrollments/{id}"), "/", then a key unique within the
// enrollment ("reminder/initial.srm-diary#3"). The row keeps only that last
// part, as its own columns hold the rest.
//
// StoredOutboxKey is the part kept, or INVALID_ARGUMENT when `key` is not
// under the row's enrollment; OutboxKeyFromStored is the whole key again.
absl::StatusOr<std::string> StoredOutboxKey(absl::string_view tenant,
                                            absl::string_view enrollment_id,
                                            absl::string_view key);
std::string OutboxKeyFromStored(absl::string_view tenant,
                                absl::string_view enrollment_id,
                                absl::string_view stored);

// OutboxKeyParts is a whole key taken apart, for finding its row.
struct OutboxKeyParts {
  std::string tenant;
  std::string enrollment_id;
  std::string stored;  // what StoredOutboxKey keeps
};
absl::StatusOr<OutboxKeyParts> ParseOutboxKey(absl::string_view key);

// OutboxKeyDigest is what keeps outbox keys unique from schema 7 on, in
// place of a unique index over the tenant, enrollment id and stored key
// (about 70 bytes an entry instead of 20): the enrollment id's first
// `prefix_bytes` bytes (all of it when shorter), then the first 10 bytes of
// SHA-256(tenant "\n" enrollment_id "\n" stored), `stored` being what
// StoredOutboxKey keeps. The prefix is for write locality: an engine-made
// enrollment id starts with its creation time in milliseconds (10
// characters, common/ids.h), so from schema 10 on a new enrollment's rows go
// to the end of the index instead of to a random page. Schemas 7 to 9 kept
// 6 bytes (kOutboxKeyPrefixBytesSchema7), a time that changes only every 17
// minutes, under which rows still landed at random; migration 7 computes that
// form and migration 10 rewrites it. Tenant and enrollment ids never hold "\n"
// (ParseEnrollmentName), so distinct keys hash distinct bytes; two keys
// under enrollment ids with the same prefix share a digest with a chance of
// about n^2 / 2^81 among n such rows. Digests of ids of different prefix
// lengths differ in length, so the two forms never equal each other for
// different rows (migration 10 can rewrite them in place).
inline constexpr size_t kOutboxKeyPrefixBytes = 10;
inline constexpr size_t kOutboxKeyPrefixBytesSchema7 = 6;
std::string OutboxKeyDigest(absl::string_view tenant,
                            absl::string_view enrollment_id,
                            absl::string_view stored,
                            size_t prefix_bytes = kOutboxKeyPrefixBytes);

// --- Event payloads (schema 6). ---

// A serialized ipsrt.v1.Event carries its own hash (field 8, 64 hex
// digits), which the event's row also keeps as its `hash` column. The
// stored payload leaves the field out, marked: 0x00 0x02 then the packed
// form (PackBlob) of the event without field 8. Only when putting the field
// back gives the same bytes (the field once, equal to `hash`, after every
// field numbered below 8 and before every field numbered above it, as a
// deterministic serialization has it); any other payload is packed whole.
std::string StoredEventPayload(absl::string_view payload,
                               absl::string_view hash);

// EventPayloadFromStored is the payload StoredEventPayload was given, with
// `hash` (the row's hash in hex) put back where it was left out. A payload
// stored whole (every form before schema 6) is unpacked as it is.
absl::StatusOr<std::string> EventPayloadFromStored(absl::string_view stored,
                                                   absl::string_view hash);

// --- Audit records (schema 6). ---

// An audit record's rpc is kept without the "/ipsrt.v1." every method of
// the API starts with ("EnrollmentService/GetEnrollment"), and its resource
// without the "tenants/{tenant}/" its own tenant column holds
// ("enrollments/01h..."). Any other value is kept whole behind a "="
// (also one whose short form would start with "=" or "/"), so that every
// stored form reads back as exactly the value given. The record's hash
// covers the values, not their stored forms.
//
// From schema 8 the next part may be coded too: "/" and a letter for an API
// service ("/eSubmitEvent" is "/ipsrt.v1.EnrollmentService/SubmitEvent")
// or for "enrollments/" in a resource ("/e01h..."). Rows written before
// keep their forms and read as before; StoredAuditRpcBeforeSchema8 is an
// rpc's form in them (ListAudit's filter matches either).
std::string StoredAuditRpc(absl::string_view rpc);
std::string StoredAuditRpcBeforeSchema8(absl::string_view rpc);
std::string AuditRpcFromStored(absl::string_view stored);
std::string StoredAuditResource(absl::string_view tenant,
                                absl::string_view resource);
std::string AuditResourceFromStored(absl::string_view tenant,
                                    absl::string_view stored);

}  // namespace ipsrt

#endif  // IPSRT_STORE_BLOB_CODEC_H_
