/*
 * ipsrt_plugin.h: the C ABI between the ipsrtd engine and an in-process
 * plugin (a shared library). Pure C so that any language with a C FFI can
 * implement it; C++ authors use <ipsrt/plugin/plugin.h> instead of writing
 * this glue by hand.
 *
 * Loading. The host dlopen()s the library and looks up ONE exported
 * function, `ipsrt_plugin_entry`, which returns a pointer to a static
 * descriptor. Before calling anything in it the host checks, in order:
 *   1. the entry point exists;
 *   2. `abi_major` equals the host's IPSRT_PLUGIN_ABI_MAJOR;
 *   3. `abi_minor` is not newer than the host's IPSRT_PLUGIN_ABI_MINOR
 *      (an older minor is accepted: minors only add at the end);
 *   4. `struct_size` is exactly the size of the descriptor of that minor;
 *   5. `name`, `version`, `create`, `destroy`, `describe`, `configure` and
 *      every entry point of each kind in `kinds` are set;
 *   6. (ABI 1.1) `contract`, when set, equals the engine's own contract
 *      fingerprint (a C++ plugin's generated message code must be the
 *      engine's: the SDK sets it from <ipsrt/plugin/contract.h>).
 * A plugin that fails a check is refused with a message naming both
 * versions; none of its functions is called.
 *
 * Messages. Every entry point takes one serialized protobuf request and
 * writes one serialized protobuf response, both of the messages that
 * proto/ipsrt/plugin/v1/plugin.proto pairs with the method of the same
 * name. Ownership: the request bytes belong to the host and are valid only
 * during the call. The plugin hands its response to `result->set_response`,
 * which copies the bytes before it returns, so the plugin may free or reuse
 * its buffer at once. Nothing allocated by one side is ever freed by the
 * other.
 *
 * Errors. An entry point returns an ipsrt_code. On anything but
 * IPSRT_CODE_OK it should call `result->set_error` with a UTF-8 message
 * (copied, like the response); the response is then ignored. Exceptions,
 * longjmp and signals must not cross this boundary.
 *
 * Threads. The host may call the entry points of one instance from several
 * threads at once; a plugin that is not thread-safe serializes itself.
 *
 * Compatibility. Structures only grow at the end; a field is never
 * removed, reordered or retyped within a major version. The host function
 * table (ipsrt_host_api) grows the same way: check `struct_size` before
 * using a field added after ABI 1.0.
 */
#ifndef IPSRT_PLUGIN_H_
#define IPSRT_PLUGIN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IPSRT_PLUGIN_ABI_MAJOR 1
#define IPSRT_PLUGIN_ABI_MINOR 1

/* Name of the one exported function. */
#define IPSRT_PLUGIN_ENTRY_SYMBOL "ipsrt_plugin_entry"

#if defined(__GNUC__)
#define IPSRT_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define IPSRT_PLUGIN_EXPORT
#endif

/* The canonical status codes (the same numbers as gRPC and absl). */
typedef enum ipsrt_code {
  IPSRT_CODE_OK = 0,
  IPSRT_CODE_CANCELLED = 1,
  IPSRT_CODE_UNKNOWN = 2,
  IPSRT_CODE_INVALID_ARGUMENT = 3,
  IPSRT_CODE_DEADLINE_EXCEEDED = 4,
  IPSRT_CODE_NOT_FOUND = 5,
  IPSRT_CODE_ALREADY_EXISTS = 6,
  IPSRT_CODE_PERMISSION_DENIED = 7,
  IPSRT_CODE_RESOURCE_EXHAUSTED = 8,
  IPSRT_CODE_FAILED_PRECONDITION = 9,
  IPSRT_CODE_ABORTED = 10,
  IPSRT_CODE_OUT_OF_RANGE = 11,
  IPSRT_CODE_UNIMPLEMENTED = 12,
  IPSRT_CODE_INTERNAL = 13,
  IPSRT_CODE_UNAVAILABLE = 14,
  IPSRT_CODE_DATA_LOSS = 15,
  IPSRT_CODE_UNAUTHENTICATED = 16
} ipsrt_code;

/* Bits of ipsrt_plugin_descriptor.kinds (ipsrt.plugin.v1.Kind). */
#define IPSRT_KIND_QUESTIONNAIRE 0x1u
#define IPSRT_KIND_REMINDER 0x2u
#define IPSRT_KIND_EXPORTER 0x4u

/* Log levels for ipsrt_host_api.log. */
#define IPSRT_LOG_DEBUG 0
#define IPSRT_LOG_INFO 1
#define IPSRT_LOG_WARNING 2
#define IPSRT_LOG_ERROR 3

/* Where one call writes its outcome. Owned by the host, valid only during
 * the call; each function copies what it is given. */
typedef struct ipsrt_result {
  void* host_data;
  void (*set_response)(struct ipsrt_result* result, const uint8_t* data,
                       size_t size);
  void (*set_error)(struct ipsrt_result* result, const char* message,
                    size_t size);
} ipsrt_result;

/* What the host offers a plugin. Grows only at the end. */
typedef struct ipsrt_host_api {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  void* host_data;
  /* Writes one line to the engine's log, tagged with the plugin's name.
   * Never pass patient data. */
  void (*log)(void* host_data, int level, const char* message, size_t size);
  /* The engine's clock (injected in tests): microseconds since the Unix
   * epoch, UTC. Deterministic entry points (scoring) must not use it. */
  int64_t (*now_unix_micros)(void* host_data);
} ipsrt_host_api;

/* One entry point: request bytes in, response or error out. */
typedef ipsrt_code (*ipsrt_call_fn)(void* instance, const uint8_t* request,
                                    size_t request_size, ipsrt_result* result);

typedef struct ipsrt_plugin_descriptor {
  /* sizeof(ipsrt_plugin_descriptor) as the plugin was compiled. */
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  /* Static, NUL-terminated UTF-8; `name` unique within one engine. */
  const char* name;
  const char* version;
  /* IPSRT_KIND_* bits. */
  uint32_t kinds;
  uint32_t reserved; /* zero */

  /* Creates one instance. `host` outlives the instance. On failure returns
   * a code other than OK, sets an error on `result` and leaves *instance
   * unset; destroy is then not called. */
  ipsrt_code (*create)(const ipsrt_host_api* host, void** instance,
                       ipsrt_result* result);
  /* Destroys an instance; no call is in flight. */
  void (*destroy)(void* instance);

  /* The function table, in the order of `service Plugin`. The entry points
   * of kinds the plugin does not have are NULL; plan_reminders is optional
   * even for a REMINDER plugin. */
  ipsrt_call_fn describe;
  ipsrt_call_fn configure;
  ipsrt_call_fn list_instruments;
  ipsrt_call_fn score_response;
  ipsrt_call_fn deliver_reminder;
  ipsrt_call_fn plan_reminders;
  ipsrt_call_fn render_export;
  ipsrt_call_fn deliver_export;

  /* ABI 1.1. The plugin contract fingerprint of the SDK the plugin was
   * compiled with (IPSRT_PLUGIN_CONTRACT), or NULL for a plugin that uses
   * only the wire format (hand-encoded or another language's protobuf). A
   * plugin that links the engine's generated C++ message code must set it:
   * that code's layout changes between SDKs, and a mismatch is refused
   * before any call instead of crashing. */
  const char* contract;
} ipsrt_plugin_descriptor;

/* Signature of the exported `ipsrt_plugin_entry`. */
typedef const ipsrt_plugin_descriptor* (*ipsrt_plugin_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* IPSRT_PLUGIN_H_ */
