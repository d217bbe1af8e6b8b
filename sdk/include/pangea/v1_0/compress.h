/* pangea/v1_0/compress.h: the compress vtable of plugin ABI 1.0, frozen (see v1_0/plugin.h).
 * The contract of each slot is the one in pangea/compress.h. */
#ifndef PANGEA_V1_0_COMPRESS_H
#define PANGEA_V1_0_COMPRESS_H

#include "pangea/v1_0/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pangea_compress_vtable_v1_0 {
    pangea_vtable_header_v1_0 header;
    size_t (*max_encoded_size)(void* instance, size_t n);
    pangea_status (*encode)(void* instance, const float* src, size_t n, uint8_t* dst,
                            size_t dst_capacity, size_t* written);
    pangea_status (*decode)(void* instance, const uint8_t* src, size_t bytes, float* dst,
                            size_t n);
    pangea_status (*decode_accumulate)(void* instance, const uint8_t* src, size_t bytes,
                                       float* acc, size_t n);
    uint64_t (*capabilities)(void* instance);
} pangea_compress_vtable_v1_0;

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_V1_0_COMPRESS_H */
