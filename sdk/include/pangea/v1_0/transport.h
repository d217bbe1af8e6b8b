/* pangea/v1_0/transport.h: the transport vtable and hello of plugin ABI 1.0, frozen (see
 * v1_0/plugin.h). The contract of each slot is the one in pangea/transport.h. The hello is
 * size-led on its own (struct_size), so the slots take today's pangea_hello type: a 1.0 plugin
 * reads and writes only the 1.0 part of it. */
#ifndef PANGEA_V1_0_TRANSPORT_H
#define PANGEA_V1_0_TRANSPORT_H

#include "pangea/transport.h" /* the opaque handles and pangea_hello */
#include "pangea/v1_0/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pangea_hello_v1_0 {
    uint32_t struct_size;
    uint32_t node_id;
    uint64_t run_id;
    uint32_t channel;
} pangea_hello_v1_0;

typedef struct pangea_transport_vtable_v1_0 {
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
} pangea_transport_vtable_v1_0;

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_V1_0_TRANSPORT_H */
