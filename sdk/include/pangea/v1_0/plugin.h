/*
 * pangea/v1_0/plugin.h: the shared structs of plugin ABI 1.0, frozen.
 *
 * Each released ABI version keeps a copy of its structs under a versioned name, like NCCL's
 * ncclNet_vN_t: the host includes them to adapt what an older plugin hands it (its adapters
 * read the old layout and fill what later minors appended with documented defaults), and a
 * plugin may be built against them to support the oldest hosts. Never edit a released struct:
 * a new minor appends to the current headers (pangea/plugin.h) and freezes a new copy here.
 *
 * The enums (pangea_status, pangea_plugin_kind, pangea_setting_type, pangea_log_level) only
 * ever gain values, so they are shared with the current header rather than copied. A 1.0 plugin
 * returns only the statuses 1.0 had (up to PANGEA_ERR_INTERNAL).
 */
#ifndef PANGEA_V1_0_PLUGIN_H
#define PANGEA_V1_0_PLUGIN_H

#include "pangea/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pangea_setting_v1_0 {
    const char* name;
    pangea_setting_type type;
    const char* default_value;
    const char* help;
    double min_value;
    double max_value;
    const char* choices;
} pangea_setting_v1_0;

typedef struct pangea_host_v1_0 {
    uint32_t struct_size;
    uint32_t abi_version;
    void* context;
    void (*log)(void* context, pangea_log_level level, const char* message);
    pangea_status (*config_string)(void* context, const char* key, const char** out);
    pangea_status (*config_int)(void* context, const char* key, int64_t* out);
    pangea_status (*config_float)(void* context, const char* key, double* out);
    pangea_status (*config_bool)(void* context, const char* key, int* out);
    void (*report_error)(void* context, pangea_status status, const char* message);
} pangea_host_v1_0;

typedef struct pangea_vtable_header_v1_0 {
    uint32_t struct_size;
    pangea_status (*create)(const pangea_host_v1_0* host, void** out_instance);
    void (*destroy)(void* instance);
    const char* (*last_error)(void* instance);
} pangea_vtable_header_v1_0;

typedef struct pangea_plugin_info_v1_0 {
    uint32_t struct_size;
    uint32_t abi_version;
    pangea_plugin_kind kind;
    const char* name;
    const char* version;
    const char* description;
    const pangea_setting_v1_0* settings;
    uint32_t setting_count;
    uint32_t setting_size;
    const void* vtable;
} pangea_plugin_info_v1_0;

typedef struct pangea_library_v1_0 {
    uint32_t struct_size;
    uint32_t abi_version;
    uint32_t plugin_count;
    const pangea_plugin_info_v1_0* const* plugins;
} pangea_library_v1_0;

/* The 1.0 entry point has the same name and signature as today's (pangea_plugin_entry_v1). */
typedef pangea_status (*pangea_plugin_entry_fn_v1_0)(uint32_t host_abi_version,
                                                     const pangea_library_v1_0** out_library);

#define PANGEA_ABI_VERSION_1_0 ((uint32_t)((1u << 16) | 0u))

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_V1_0_PLUGIN_H */
