/*
 * A plugin written against the pure C ABI, compiled once per failure mode
 * (FAULT_* below) to test how the host refuses or survives each one. With
 * no FAULT_ it is a valid questionnaire plugin that serves no instruments
 * and scores every response as empty.
 *
 * Responses are hand-encoded protobuf: DescribeResponse is
 *   field 1 (name) and 2 (version) as length-delimited strings,
 *   field 3 (kinds) as a packed varint list.
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipsrt_plugin.h"

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "faulty"
#endif

__attribute__((unused)) static ipsrt_code Error(ipsrt_result* result, ipsrt_code code,
                        const char* message) {
  result->set_error(result, message, strlen(message));
  return code;
}

__attribute__((unused)) static int instance_token;

static ipsrt_code Create(const ipsrt_host_api* host, void** instance,
                         ipsrt_result* result) {
#ifdef FAULT_INIT
  (void)instance;
  return Error(result, IPSRT_CODE_FAILED_PRECONDITION,
               "cannot open /nonexistent/instruments.db");
#else
  (void)host;
  (void)result;
  *instance = &instance_token;
  return IPSRT_CODE_OK;
#endif
}

static void Destroy(void* instance) { (void)instance; }

static ipsrt_code Describe(void* self, const uint8_t* request, size_t size,
                           ipsrt_result* result) {
  uint8_t buffer[256];
  size_t n = 0;
  const char* name = PLUGIN_NAME;
  const char* version = "0.0.1";
  buffer[n++] = 0x0A;
  buffer[n++] = (uint8_t)strlen(name);
  memcpy(buffer + n, name, strlen(name));
  n += strlen(name);
  buffer[n++] = 0x12;
  buffer[n++] = (uint8_t)strlen(version);
  memcpy(buffer + n, version, strlen(version));
  n += strlen(version);
  buffer[n++] = 0x1A; /* kinds, packed */
  buffer[n++] = 0x01;
  buffer[n++] = 0x01; /* QUESTIONNAIRE */
  (void)self;
  (void)request;
  (void)size;
  result->set_response(result, buffer, n);
  return IPSRT_CODE_OK;
}

static ipsrt_code Configure(void* self, const uint8_t* request, size_t size,
                            ipsrt_result* result) {
  (void)self;
  (void)request;
#ifdef FAULT_CONFIG
  /* Any non-empty config is refused, as a plugin does with a bad value. */
  if (size > 0) {
    return Error(result, IPSRT_CODE_INVALID_ARGUMENT,
                 "config.threshold: must be at most 10");
  }
#else
  (void)size;
#endif
  result->set_response(result, (const uint8_t*)"", 0);
  return IPSRT_CODE_OK;
}

__attribute__((unused)) static ipsrt_code Empty(void* self, const uint8_t* request, size_t size,
                        ipsrt_result* result) {
  (void)self;
  (void)request;
  (void)size;
  result->set_response(result, (const uint8_t*)"", 0);
  return IPSRT_CODE_OK;
}

__attribute__((unused)) static ipsrt_code Score(void* self, const uint8_t* request, size_t size,
                        ipsrt_result* result) {
  (void)self;
  (void)request;
  (void)size;
#if defined(FAULT_GARBAGE)
  {
    /* A varint that never ends: no protobuf parser accepts it. */
    static const uint8_t garbage[] = {0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                      0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    result->set_response(result, garbage, sizeof garbage);
    return IPSRT_CODE_OK;
  }
#elif defined(FAULT_CRASH)
  abort();
  return IPSRT_CODE_INTERNAL; /* not reached */
#elif defined(FAULT_HANG)
  for (;;) pause();
  return IPSRT_CODE_INTERNAL; /* not reached */
#elif defined(FAULT_SLEEP)
  /* Slow but not stuck: answers after 1.5 s. */
  usleep(1500000);
  result->set_response(result, (const uint8_t*)"", 0);
  return IPSRT_CODE_OK;
#else
  result->set_response(result, (const uint8_t*)"", 0);
  return IPSRT_CODE_OK;
#endif
}

static const ipsrt_plugin_descriptor kDescriptor = {
#ifdef FAULT_WRONG_SIZE
    sizeof(ipsrt_plugin_descriptor) - 8,
#else
    sizeof(ipsrt_plugin_descriptor),
#endif
#ifdef FAULT_ABI_MAJOR
    2,
#else
    IPSRT_PLUGIN_ABI_MAJOR,
#endif
#ifdef FAULT_NEWER_MINOR
    IPSRT_PLUGIN_ABI_MINOR + 7,
#else
    IPSRT_PLUGIN_ABI_MINOR,
#endif
    PLUGIN_NAME,
    "0.0.1",
    IPSRT_KIND_QUESTIONNAIRE,
    0,
    &Create,
    &Destroy,
    &Describe,
    &Configure,
    &Empty, /* list_instruments */
#ifdef FAULT_MISSING_SCORE
    NULL,
#else
    &Score,
#endif
    NULL,
    NULL,
    NULL,
    NULL,
#ifdef FAULT_CONTRACT
    /* As a C++ plugin built with another SDK's generated code. */
    "0.0.9+00000000deadbeef",
#else
    NULL, /* contract: the wire format only */
#endif
};

#ifdef FAULT_NO_ENTRY
IPSRT_PLUGIN_EXPORT const ipsrt_plugin_descriptor* plugin_entry(void) {
  return &kDescriptor;
}
#else
IPSRT_PLUGIN_EXPORT const ipsrt_plugin_descriptor* ipsrt_plugin_entry(void) {
  return &kDescriptor;
}
#endif
