/* pangea/v1_1/transport.h: the transport vtable of plugin ABI 1.1, frozen (see v1_0/plugin.h).
 * 1.1 appended one optional slot, allreduce_sum_f32, to the 1.0 transport vtable; nothing else
 * changed in 1.1, so the other structs of 1.1 are those of v1_0/. The contract of each slot is
 * the one in pangea/transport.h. */
#ifndef PANGEA_V1_1_TRANSPORT_H
#define PANGEA_V1_1_TRANSPORT_H

#include "pangea/v1_0/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pangea_transport_vtable_v1_1 {
    pangea_vtable_header_v1_0 header;
    pangea_status (*listen)(void* instance, const char* address, pangea_listener** out_listener,
                            char* bound_address, size_t bound_capacity);
    pangea_status (*accept)(void* instance, pangea_listener* listener, const pangea_hello* self,
                            int timeout_ms, pangea_hello* peer, pangea_connection** out_connection);
    pangea_status (*connect)(void* instance, const char* address, const pangea_hello* self,
                             int timeout_ms, pangea_hello* peer, pangea_connection** out_connection);
    pangea_status (*isend)(void* instance, pangea_connection* connection, const void* data,
                           size_t bytes, pangea_request** out_request);
    pangea_status (*irecv)(void* instance, pangea_connection* connection, void* data,
                           size_t bytes, pangea_request** out_request);
    pangea_status (*test)(void* instance, pangea_request* request);
    pangea_status (*wait)(void* instance, pangea_request* request, int timeout_ms);
    void (*abort)(void* instance, pangea_connection* connection);
    void (*close)(void* instance, pangea_connection* connection);
    void (*close_listener)(void* instance, pangea_listener* listener);
    pangea_status (*allreduce_sum_f32)(void* instance, pangea_connection* next,
                                       pangea_connection* previous, uint32_t rank, uint32_t world,
                                       float* data, size_t count, int timeout_ms);
} pangea_transport_vtable_v1_1;

#define PANGEA_ABI_VERSION_1_1 ((uint32_t)((1u << 16) | 1u))

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_V1_1_TRANSPORT_H */
