#include "plugin_host/abi_adapters.hpp"

#include <cstring>

#include "pangea/v1_0/compress.h"
#include "pangea/v1_0/optim.h"
#include "pangea/v1_0/plugin.h"
#include "pangea/v1_0/storage.h"
#include "pangea/v1_0/transport.h"
#include "pangea/v1_1/transport.h"

namespace pangea {
namespace {

// The frozen sizes the current headers name must be those of the frozen layouts.
static_assert(PANGEA_HOST_SIZE_1_0 == sizeof(pangea_host_v1_0));
static_assert(PANGEA_SETTING_SIZE_1_0 == sizeof(pangea_setting_v1_0));
static_assert(PANGEA_PLUGIN_INFO_SIZE_1_0 == sizeof(pangea_plugin_info_v1_0));
static_assert(PANGEA_LIBRARY_SIZE_1_0 == sizeof(pangea_library_v1_0));
static_assert(PANGEA_TRANSPORT_VTABLE_SIZE_1_0 == sizeof(pangea_transport_vtable_v1_0));
static_assert(PANGEA_HELLO_SIZE_1_0 == sizeof(pangea_hello_v1_0));
static_assert(PANGEA_TRANSPORT_VTABLE_SIZE_1_1 == sizeof(pangea_transport_vtable_v1_1));
static_assert(PANGEA_COMPRESS_VTABLE_SIZE_1_0 == sizeof(pangea_compress_vtable_v1_0));
static_assert(PANGEA_OPTIM_VTABLE_SIZE_1_0 == sizeof(pangea_optim_vtable_v1_0));
static_assert(PANGEA_STORAGE_VTABLE_SIZE_1_0 == sizeof(pangea_storage_vtable_v1_0));
// Kinds whose vtable has not grown since 1.0: when one does, add a branch for today's layout
// below, like compress's.
static_assert(sizeof(pangea_storage_vtable) == sizeof(pangea_storage_vtable_v1_0));
static_assert(sizeof(pangea_transport_vtable) == sizeof(pangea_transport_vtable_v1_1));
static_assert(sizeof(pangea_plugin_info) == sizeof(pangea_plugin_info_v1_0));
static_assert(sizeof(pangea_library) == sizeof(pangea_library_v1_0));
static_assert(sizeof(pangea_setting) == sizeof(pangea_setting_v1_0));

// The old layouts' function types differ from today's only in pointers to structs that are
// size-led themselves (pangea_host_v1_0 is a prefix of pangea_host), so a slot is carried over
// as it is.
template <class To, class From>
To slot(From from) {
    return reinterpret_cast<To>(from);
}

// Reads a plugin's struct of `size` bytes as the layout T: copies what both have, zeroes the
// rest (the caller fills defaults). Vtables and descriptors are plain data.
template <class T>
T read_prefix(const void* source, size_t size) {
    T out;
    std::memset(&out, 0, sizeof out);
    std::memcpy(&out, source, size < sizeof out ? size : sizeof out);
    return out;
}

std::string too_small(const char* what, uint32_t size, size_t needed) {
    return std::string(what) + " too small: struct_size is " + std::to_string(size) +
           " bytes, ABI 1.0's has " + std::to_string(needed);
}

// Every slot of a layout's required part is a function pointer after the header.
std::string first_null_slot(const void* vtable, size_t required_size) {
    const auto* header = static_cast<const pangea_vtable_header_v1_0*>(vtable);
    if (header->create == nullptr || header->destroy == nullptr || header->last_error == nullptr)
        return "vtable header has a NULL create, destroy or last_error";
    using Slot = void (*)();
    const auto* bytes = static_cast<const unsigned char*>(vtable);
    for (size_t at = sizeof(pangea_vtable_header_v1_0); at + sizeof(Slot) <= required_size; at += sizeof(Slot)) {
        Slot value = nullptr;
        std::memcpy(&value, bytes + at, sizeof value);
        if (value == nullptr)
            return "required vtable slot " + std::to_string((at - sizeof(pangea_vtable_header_v1_0)) / sizeof(Slot)) +
                   " (after the header) is NULL";
    }
    return "";
}

pangea_vtable_header from_v1_0(const pangea_vtable_header_v1_0& old, uint32_t today_size) {
    return {today_size, slot<decltype(pangea_vtable_header::create)>(old.create), old.destroy, old.last_error};
}

// ------------------------------------------------------------------ defaults of appended slots

pangea_status no_allreduce(void*, pangea_connection*, pangea_connection*, uint32_t, uint32_t, float*, size_t,
                           int) {
    return PANGEA_ERR_UNSUPPORTED;
}

double default_error_bound(void*) { return PANGEA_COMPRESS_DEFAULT_ERROR_BOUND; }

size_t no_range_state_size(void*, size_t) { return 0; }
pangea_status no_save_state_range(void*, size_t, size_t, uint8_t*, size_t, size_t*) { return PANGEA_ERR_UNSUPPORTED; }
pangea_status no_load_state_range(void*, size_t, size_t, const uint8_t*, size_t) { return PANGEA_ERR_UNSUPPORTED; }

// ------------------------------------------------------------------ one adapter per layout

pangea_transport_vtable transport_from(const pangea_transport_vtable_v1_0& v) {
    pangea_transport_vtable out{};
    out.header = from_v1_0(v.header, sizeof out);
    out.listen = v.listen;
    out.accept = v.accept;
    out.connect = v.connect;
    out.isend = v.isend;
    out.irecv = v.irecv;
    out.test = v.test;
    out.wait = v.wait;
    out.abort = v.abort;
    out.close = v.close;
    out.close_listener = v.close_listener;
    out.allreduce_sum_f32 = nullptr;  // 1.1
    return out;
}

pangea_transport_vtable transport_from(const pangea_transport_vtable_v1_1& v) {
    pangea_transport_vtable out = transport_from(read_prefix<pangea_transport_vtable_v1_0>(&v, sizeof v));
    out.allreduce_sum_f32 = v.allreduce_sum_f32;
    return out;
}

pangea_compress_vtable compress_from(const pangea_compress_vtable_v1_0& v) {
    pangea_compress_vtable out{};
    out.header = from_v1_0(v.header, sizeof out);
    out.max_encoded_size = v.max_encoded_size;
    out.encode = v.encode;
    out.decode = v.decode;
    out.decode_accumulate = v.decode_accumulate;
    out.capabilities = v.capabilities;
    out.error_bound = nullptr;  // 1.2
    return out;
}

pangea_optim_vtable optim_from(const pangea_optim_vtable_v1_0& v) {
    pangea_optim_vtable out{};
    out.header = from_v1_0(v.header, sizeof out);
    out.init = v.init;
    out.step = v.step;
    out.state_size = v.state_size;
    out.save_state = v.save_state;
    out.load_state = v.load_state;
    out.range_state_size = nullptr;  // 1.3
    out.save_state_range = nullptr;
    out.load_state_range = nullptr;
    return out;
}

pangea_storage_vtable storage_from(const pangea_storage_vtable_v1_0& v) {
    pangea_storage_vtable out{};
    out.header = from_v1_0(v.header, sizeof out);
    out.open_write = v.open_write;
    out.write = v.write;
    out.commit = v.commit;
    out.abort = v.abort;
    out.read = v.read;
    out.stat = v.stat;
    out.list = v.list;
    out.remove = v.remove;
    return out;
}

// Today's layout, read from a plugin built against this header or a newer one.
template <class T>
T current(const void* vtable, uint32_t size) {
    T out = read_prefix<T>(vtable, size);
    out.header.struct_size = sizeof out;
    return out;
}

}  // namespace

std::string adapt_library(const pangea_library* library, pangea_library* out) {
    if (library->struct_size < PANGEA_LIBRARY_SIZE_1_0)
        return too_small("library descriptor", library->struct_size, PANGEA_LIBRARY_SIZE_1_0);
    *out = read_prefix<pangea_library>(library, library->struct_size);
    out->struct_size = sizeof *out;
    return "";
}

std::string adapt_plugin_info(const pangea_plugin_info* info, pangea_plugin_info* out) {
    if (info->struct_size < PANGEA_PLUGIN_INFO_SIZE_1_0)
        return too_small("plugin descriptor", info->struct_size, PANGEA_PLUGIN_INFO_SIZE_1_0);
    *out = read_prefix<pangea_plugin_info>(info, info->struct_size);
    out->struct_size = sizeof *out;
    return "";
}

pangea_setting setting_at(const pangea_setting* settings, uint32_t stride, uint32_t i) {
    const auto* base = reinterpret_cast<const unsigned char*>(settings);
    return read_prefix<pangea_setting>(base + static_cast<size_t>(i) * stride, stride);
}

std::string adapt_vtable(pangea_plugin_kind kind, const void* vtable, AdaptedVtable* out) {
    if (vtable == nullptr) return "vtable is NULL";
    const uint32_t size = static_cast<const pangea_vtable_header*>(vtable)->struct_size;
    auto required = [&](const char* name, size_t size_1_0) -> std::string {
        if (size < size_1_0)
            return std::string("vtable too small: struct_size is ") + std::to_string(size) + " bytes, a " + name +
                   " vtable of ABI 1.0 has " + std::to_string(size_1_0);
        return first_null_slot(vtable, size_1_0);
    };
    switch (kind) {
        case PANGEA_KIND_TRANSPORT: {
            if (std::string bad = required("transport", PANGEA_TRANSPORT_VTABLE_SIZE_1_0); !bad.empty()) return bad;
            pangea_transport_vtable v =
                size >= sizeof(pangea_transport_vtable) ? current<pangea_transport_vtable>(vtable, size)
                : size >= PANGEA_TRANSPORT_VTABLE_SIZE_1_1
                    ? transport_from(*static_cast<const pangea_transport_vtable_v1_1*>(vtable))
                    : transport_from(*static_cast<const pangea_transport_vtable_v1_0*>(vtable));
            if (v.allreduce_sum_f32 == nullptr) v.allreduce_sum_f32 = &no_allreduce;
            *out = v;
            return "";
        }
        case PANGEA_KIND_COMPRESS: {
            if (std::string bad = required("compress", PANGEA_COMPRESS_VTABLE_SIZE_1_0); !bad.empty()) return bad;
            pangea_compress_vtable v = size >= sizeof(pangea_compress_vtable)
                                           ? current<pangea_compress_vtable>(vtable, size)
                                           : compress_from(*static_cast<const pangea_compress_vtable_v1_0*>(vtable));
            if (v.error_bound == nullptr) v.error_bound = &default_error_bound;
            *out = v;
            return "";
        }
        case PANGEA_KIND_OPTIM: {
            if (std::string bad = required("optim", PANGEA_OPTIM_VTABLE_SIZE_1_0); !bad.empty()) return bad;
            pangea_optim_vtable v = size >= sizeof(pangea_optim_vtable)
                                        ? current<pangea_optim_vtable>(vtable, size)
                                        : optim_from(*static_cast<const pangea_optim_vtable_v1_0*>(vtable));
            // The range slots go together: a plugin with some but not all of them has none.
            if (v.range_state_size == nullptr || v.save_state_range == nullptr || v.load_state_range == nullptr) {
                v.range_state_size = &no_range_state_size;
                v.save_state_range = &no_save_state_range;
                v.load_state_range = &no_load_state_range;
            }
            *out = v;
            return "";
        }
        case PANGEA_KIND_STORAGE:
            if (std::string bad = required("storage", PANGEA_STORAGE_VTABLE_SIZE_1_0); !bad.empty()) return bad;
            *out = storage_from(*static_cast<const pangea_storage_vtable_v1_0*>(vtable));
            return "";
    }
    return "unknown kind";
}

const pangea_vtable_header& header_of(const AdaptedVtable& vtable) {
    return std::visit([](const auto& v) -> const pangea_vtable_header& { return v.header; }, vtable);
}

}  // namespace pangea
