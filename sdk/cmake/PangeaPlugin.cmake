# pangea_add_plugin(<target> <sources>...)
#
# Builds a Pangea plugin: a shared library (lib<target>.so) linked against the SDK headers only,
# exporting nothing but its entry point, with no undefined symbols left to the host (plugins never
# link the core). Install it into <prefix>/lib/pangea/plugins, or point PANGEA_PLUGIN_PATH at
# its directory, or name it in a manifest with `library = "path/to/lib<target>.so"`.

# The linker script lies beside this file, in the source tree and in an installed SDK alike.
set(PANGEA_SDK_PLUGIN_MAP ${CMAKE_CURRENT_LIST_DIR}/plugin.map CACHE INTERNAL "plugin export list")

function(pangea_add_plugin target)
  add_library(${target} MODULE ${ARGN})
  target_link_libraries(${target} PRIVATE PangeaSDK::sdk)
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${PANGEA_SDK_PLUGIN_MAP})
  target_link_options(${target} PRIVATE
    LINKER:--no-undefined
    LINKER:--version-script=${PANGEA_SDK_PLUGIN_MAP})
  # Bit parity across machines: no fused multiply-add unless the source asks for one, so the same
  # floats give the same bits whatever the compiler's target (docs/plugins/compress.md).
  target_compile_options(${target} PRIVATE -ffp-contract=off)
  # A plugin runs in the hot path: optimized unless the project chose a build type itself.
  if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
    target_compile_options(${target} PRIVATE -O2)
  endif()
endfunction()
