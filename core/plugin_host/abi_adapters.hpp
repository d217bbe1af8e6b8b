// Reads what a plugin hands the host, in whatever ABI 1.x layout it was built with, into today's
// structs: size-led (a field beyond the plugin's struct_size is never read), with one adapter per
// released layout (pangea/v1_0/, v1_1/), tried newest first, and the documented default for
// every slot an older plugin lacks. The rest of the host only ever sees today's layouts, with
// every slot callable.
#pragma once

#include <string>
#include <variant>

#include "pangea/compress.h"
#include "pangea/optim.h"
#include "pangea/plugin.h"
#include "pangea/storage.h"
#include "pangea/transport.h"

namespace pangea {

using AdaptedVtable = std::variant<pangea_transport_vtable, pangea_compress_vtable,
                                   pangea_optim_vtable, pangea_storage_vtable>;

// Each returns "" and writes *out, or says why the plugin's struct cannot be used.
std::string adapt_library(const pangea_library* library, pangea_library* out);
std::string adapt_plugin_info(const pangea_plugin_info* info, pangea_plugin_info* out);
// `kind` must be one of the four known kinds. Checks every required slot is non-NULL.
std::string adapt_vtable(pangea_plugin_kind kind, const void* vtable, AdaptedVtable* out);

// The i-th entry of a settings array laid out with the plugin's stride (setting_size, at least
// PANGEA_SETTING_SIZE_1_0).
pangea_setting setting_at(const pangea_setting* settings, uint32_t stride, uint32_t i);

// The header of any adapted vtable.
const pangea_vtable_header& header_of(const AdaptedVtable& vtable);

}  // namespace pangea
