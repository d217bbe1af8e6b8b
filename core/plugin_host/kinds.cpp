#include "plugin_host/kinds.hpp"

#include <cstring>


namespace pangea {
namespace {

constexpr KindInfo kKinds[] = {
    {PANGEA_KIND_TRANSPORT, "transport"},
    {PANGEA_KIND_COMPRESS, "compress"},
    {PANGEA_KIND_OPTIM, "optim"},
    {PANGEA_KIND_STORAGE, "storage"},
};

}  // namespace

std::span<const KindInfo> all_kinds() { return kKinds; }

const KindInfo* find_kind(pangea_plugin_kind kind) {
    uint32_t value;  // compared as an integer: the value may lie outside the enum
    std::memcpy(&value, &kind, sizeof value);
    for (const auto& info : kKinds)
        if (static_cast<uint32_t>(info.kind) == value) return &info;
    return nullptr;
}

const KindInfo* find_kind(std::string_view name) {
    for (const auto& info : kKinds)
        if (name == info.name) return &info;
    return nullptr;
}

const char* kind_name(pangea_plugin_kind kind) {
    const KindInfo* info = find_kind(kind);
    return info ? info->name : "unknown";
}

}  // namespace pangea
