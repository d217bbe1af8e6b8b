#include "plugin_host/kinds.hpp"

#include <cstring>

#include "pangea/compress.h"
#include "pangea/optim.h"
#include "pangea/storage.h"
#include "pangea/transport.h"

namespace pangea {
namespace {

// When a kind's vtable grows (ABI 1.x), its new slots are optional: this table keeps the 1.0
// sizes, and the host checks header.struct_size before calling anything past them.
constexpr KindInfo kKinds[] = {
    {PANGEA_KIND_TRANSPORT, "transport", PANGEA_TRANSPORT_VTABLE_SIZE_1_0},  // + allreduce_sum_f32, optional
    {PANGEA_KIND_COMPRESS, "compress", sizeof(pangea_compress_vtable)},
    {PANGEA_KIND_OPTIM, "optim", sizeof(pangea_optim_vtable)},
    {PANGEA_KIND_STORAGE, "storage", sizeof(pangea_storage_vtable)},
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
