// The four plugin kinds: their names and manifest sections.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

#include "pangea/plugin.h"

namespace pangea {

struct KindInfo {
    pangea_plugin_kind kind;
    const char* name;  // "compress": used in the CLI and as the manifest section name
};

// All kinds, in manifest order.
std::span<const KindInfo> all_kinds();
const KindInfo* find_kind(pangea_plugin_kind kind);  // nullptr for an unknown kind
const KindInfo* find_kind(std::string_view name);    // nullptr for an unknown name
const char* kind_name(pangea_plugin_kind kind);      // "unknown" for an unknown kind

}  // namespace pangea
