/* pangea/v1_0/optim.h: the optim vtable of plugin ABI 1.0, frozen (see v1_0/plugin.h).
 * The contract of each slot is the one in pangea/optim.h. */
#ifndef PANGEA_V1_0_OPTIM_H
#define PANGEA_V1_0_OPTIM_H

#include "pangea/v1_0/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pangea_optim_vtable_v1_0 {
    pangea_vtable_header_v1_0 header;
    pangea_status (*init)(void* instance, size_t n);
    pangea_status (*step)(void* instance, float* params, const float* pseudo_grad, size_t n);
    size_t (*state_size)(void* instance);
    pangea_status (*save_state)(void* instance, uint8_t* dst, size_t capacity, size_t* written);
    pangea_status (*load_state)(void* instance, const uint8_t* src, size_t bytes);
} pangea_optim_vtable_v1_0;

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_V1_0_OPTIM_H */
