# Fails when gRPC, libpq or SQLite reaches the pure layers (see
# CMakeLists.txt beside this file).
#   MODE=closure  CLOSURES=<file written at configure time>
#   MODE=binaries BINARIES=<executables linked with one pure layer>
#                 CONTROL=<ipsrtd, which must show all three>

# gRPC (grpc, grpc++, gpr, the ipsrt stubs), libpq and SQLite, and the
# engine layers that bring them.
set(forbidden_libraries
  "grpc|gRPC|gpr|libpq|PostgreSQL|sqlite|SQLite|^ipsrt_proto$|^ipsrt_health_proto$|^ipsrt_store_backends$|^ipsrt_plugin_loader$|^ipsrt_service$|^ipsrt_ops$")

cmake_minimum_required(VERSION 3.25)
set(failures 0)

if(MODE STREQUAL "closure")
  include("${CLOSURES}")
  foreach(layer ipsrt_common ipsrt_instruments ipsrt_model
      ipsrt_runtime ipsrt_report ipsrt_store ipsrt_plugin_host ipsrt_core)
    set(bad)
    foreach(item ${closure_${layer}})
      if(item MATCHES "${forbidden_libraries}")
        list(APPEND bad "${item}")
      endif()
    endforeach()
    # Shown without Abseil's forty-odd libraries.
    set(shown ${closure_${layer}})
    list(FILTER shown EXCLUDE REGEX "absl|^$")
    list(JOIN shown " " shown)
    if(bad)
      message(SEND_ERROR "${layer} links ${bad}\n  closure: ${shown}")
      math(EXPR failures "${failures} + 1")
    else()
      message(STATUS "${layer}: ${shown}")
    endif()
  endforeach()
  # Positive control: the service layer must have all three, or the walk
  # above proves nothing.
  foreach(needle grpc "libpq|PostgreSQL" "sqlite|SQLite")
    set(found FALSE)
    foreach(item ${closure_ipsrt_service})
      if(item MATCHES "${needle}")
        set(found TRUE)
      endif()
    endforeach()
    if(NOT found)
      message(SEND_ERROR "control: ipsrt_service does not link ${needle}; "
                         "the closure walk is broken")
      math(EXPR failures "${failures} + 1")
    endif()
  endforeach()
elseif(MODE STREQUAL "binaries")
  foreach(binary ${BINARIES})
    execute_process(COMMAND ldd "${binary}" OUTPUT_VARIABLE libs
                    RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "ldd ${binary} failed (${rc})")
    endif()
    string(REGEX MATCHALL "[^\n]*(libgrpc|libgpr|libpq|libsqlite3)[^\n]*"
           bad_libs "${libs}")
    # Static copies show up as symbols instead (grep: CMake's regex is slow
    # on megabytes of symbols).
    execute_process(COMMAND nm -C "${binary}"
                    COMMAND grep -E "grpc::|[^a-z_]grpc_|[^a-z_]gpr_|sqlite3_|PQconnectdb|PQexec"
                    OUTPUT_VARIABLE bad_symbols RESULTS_VARIABLE rcs)
    list(GET rcs 0 rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "nm ${binary} failed (${rc})")
    endif()
    get_filename_component(name "${binary}" NAME)
    if(bad_libs OR bad_symbols)
      string(SUBSTRING "${bad_symbols}" 0 2000 some_symbols)
      message(SEND_ERROR "${name} links ${bad_libs}; gRPC/libpq/SQLite "
                         "symbols:\n${some_symbols}")
      math(EXPR failures "${failures} + 1")
    else()
      string(REGEX REPLACE "[ \t]*\\(0x[0-9a-f]+\\)" "" libs "${libs}")
      message(STATUS "${name}: no gRPC, libpq or SQLite; ldd:\n${libs}")
    endif()
  endforeach()
  # Positive control: ipsrtd has all three, so the patterns match what
  # ldd really prints.
  execute_process(COMMAND ldd "${CONTROL}" OUTPUT_VARIABLE libs)
  foreach(needle libgrpc libpq libsqlite3)
    if(NOT libs MATCHES "${needle}")
      message(SEND_ERROR "control: ldd ${CONTROL} shows no ${needle}")
      math(EXPR failures "${failures} + 1")
    endif()
  endforeach()
else()
  message(FATAL_ERROR "MODE must be closure or binaries")
endif()

if(failures GREATER 0)
  message(FATAL_ERROR "${failures} layering violation(s)")
endif()
