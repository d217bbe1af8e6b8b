/*
 * pangea/storage.h: checkpoint storage plugins (PANGEA_KIND_STORAGE).
 *
 * A flat store of immutable objects named by keys ("run/step-00100/params.bin"). Writes stream:
 * open a writer, write chunks, then commit (the object becomes visible whole, atomically) or
 * abort (nothing becomes visible). Reads take byte ranges, so large objects never need to fit in
 * memory at once.
 *
 * Threads: all functions of one instance may be called from several threads at once; one writer
 * is used by one thread at a time.
 */
#ifndef PANGEA_STORAGE_H
#define PANGEA_STORAGE_H

#include "pangea/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pangea_storage_writer pangea_storage_writer;

/* Called once per key by list(); `key` is borrowed. Return non-zero to stop the listing. */
typedef int (*pangea_storage_list_fn)(void* user, const char* key, uint64_t size);

typedef struct pangea_storage_vtable {
    pangea_vtable_header header;

    /* Starts writing the object `key`. Writes a writer to *out_writer, released by commit() or
     * abort(), whatever they return. An existing object of that key stays visible until commit. */
    pangea_status (*open_write)(void* instance, const char* key, pangea_storage_writer** out_writer);

    /* Appends `bytes` bytes of data (borrowed) to the object being written. */
    pangea_status (*write)(void* instance, pangea_storage_writer* writer, const void* data,
                           size_t bytes);

    /* Makes the object visible under its key, durably, replacing any earlier one; releases the
     * writer. On failure nothing new is visible. */
    pangea_status (*commit)(void* instance, pangea_storage_writer* writer);

    /* Drops what was written and releases the writer. Accepts NULL. */
    void (*abort)(void* instance, pangea_storage_writer* writer);

    /* Reads up to `bytes` bytes of `key` starting at `offset` into dst (borrowed), writing the
     * count to *read (less than asked only at the end of the object).
     * PANGEA_ERR_NOT_FOUND for a missing key. */
    pangea_status (*read)(void* instance, const char* key, uint64_t offset, void* dst,
                          size_t bytes, size_t* read);

    /* Writes the size of `key` to *size. PANGEA_ERR_NOT_FOUND for a missing key. */
    pangea_status (*stat)(void* instance, const char* key, uint64_t* size);

    /* Calls fn for every visible key that starts with `prefix`, in lexicographic order. */
    pangea_status (*list)(void* instance, const char* prefix, pangea_storage_list_fn fn,
                          void* user);

    /* Deletes `key`. PANGEA_ERR_NOT_FOUND for a missing key. */
    pangea_status (*remove)(void* instance, const char* key);
} pangea_storage_vtable;

/* The size of a storage vtable of ABI 1.0 (unchanged since): every slot is required. */
#define PANGEA_STORAGE_VTABLE_SIZE_1_0 (offsetof(pangea_storage_vtable, remove) + sizeof(void (*)(void)))

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_STORAGE_H */
