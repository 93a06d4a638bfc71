// How the stores keep their large blobs (enrollment snapshots, request
// responses) on disk: deflated when that makes them smaller, as they are
// otherwise. Event payloads are not packed: the hash chain and the tamper
// checks work on the bytes in the table. Both stores read either form, so that
// a database copied from SQLite to PostgreSQL (`ipsrt store copy`, byte for
// byte) reads the same.
//
// Stored form: a value whose first byte is not 0x00 is the value itself
// (every serialized protobuf message, which never starts with a zero tag);
// 0x00 0x01 <varint size> <zlib stream> is a deflated value; 0x00 0x00
// <value> is a value that itself starts with 0x00.
#ifndef IPSRT_STORE_BLOB_CODEC_H_
#define IPSRT_STORE_BLOB_CODEC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ipsrt {

// PackBlob is the stored form of `value`: deflated (zlib, fastest level)
// when the value is 64 bytes or more and that saves space.
std::string PackBlob(absl::string_view value);

// UnpackBlob is the value of a stored form; DATA_LOSS naming `what` when a
// deflated value cannot be inflated to its recorded size.
absl::StatusOr<std::string> UnpackBlob(absl::string_view stored,
                                       absl::string_view what);

}  // namespace ipsrt

#endif  // IPSRT_STORE_BLOB_CODEC_H_
