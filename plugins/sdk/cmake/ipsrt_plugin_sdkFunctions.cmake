# ipsrt_add_plugin(<name> SOURCES <files...> [OUTPUT_DIRECTORY <dir>])
#
# Builds lib<name>.so, a plugin ipsrtd can load in process or run out of
# process with ipsrt-plugin-runner. Only the entry point IPSRT_PLUGIN
# defines is exported (hidden visibility), and every symbol must resolve at
# link time (--no-undefined) so a missing library fails the build, not the
# engine's start-up.
function(ipsrt_add_plugin name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "ipsrt_add_plugin(${name}): SOURCES is required")
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ipsrt::plugin_sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX "lib"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  # With clang's sanitizers the runtime lives in the executable (ipsrtd, a
  # fuzz target), so a plugin leaves the __asan_* and __ubsan_* symbols to it.
  if(NOT (CMAKE_CXX_COMPILER_ID MATCHES "Clang" AND
          CMAKE_CXX_FLAGS MATCHES "-fsanitize="))
    target_link_options(${name} PRIVATE "LINKER:--no-undefined")
  endif()
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES
      LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
endfunction()
