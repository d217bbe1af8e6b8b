/* pangea/v1_0/storage.h: the storage vtable of plugin ABI 1.0, frozen (see v1_0/plugin.h).
 * The contract of each slot is the one in pangea/storage.h. */
#ifndef PANGEA_V1_0_STORAGE_H
#define PANGEA_V1_0_STORAGE_H

#include "pangea/storage.h" /* the opaque writer handle and the list callback type */
#include "pangea/v1_0/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pangea_storage_vtable_v1_0 {
    pangea_vtable_header_v1_0 header;
    pangea_status (*open_write)(void* instance, const char* key, pangea_storage_writer** out_writer);
    pangea_status (*write)(void* instance, pangea_storage_writer* writer, const void* data,
                           size_t bytes);
    pangea_status (*commit)(void* instance, pangea_storage_writer* writer);
    void (*abort)(void* instance, pangea_storage_writer* writer);
    pangea_status (*read)(void* instance, const char* key, uint64_t offset, void* dst,
                          size_t bytes, size_t* read);
    pangea_status (*stat)(void* instance, const char* key, uint64_t* size);
    pangea_status (*list)(void* instance, const char* prefix, pangea_storage_list_fn fn,
                          void* user);
    pangea_status (*remove)(void* instance, const char* key);
} pangea_storage_vtable_v1_0;

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_V1_0_STORAGE_H */
