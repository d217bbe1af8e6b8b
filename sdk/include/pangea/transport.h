/*
 * pangea/transport.h: transport plugins (PANGEA_KIND_TRANSPORT).
 *
 * Point-to-point, connection-oriented byte transport between nodes. One side listens, the other
 * connects; both sides exchange a hello (node ids, run id, protocol version) before a connection
 * is handed out. Data moves by asynchronous send and receive of caller-owned byte ranges, matched
 * in order per connection and direction, completed by test() or wait(). abort() unblocks every
 * pending operation on a connection: the mesh uses it when it declares a peer dead.
 *
 * Handles (listener, connection, request) are opaque pointers owned by the instance that made
 * them; each is released by the function named beside its maker. All functions of one instance
 * may be called from several threads at once, except that one request is completed by one
 * thread.
 */
#ifndef PANGEA_TRANSPORT_H
#define PANGEA_TRANSPORT_H

#include "pangea/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pangea_listener pangea_listener;
typedef struct pangea_connection pangea_connection;
typedef struct pangea_request pangea_request;

/* What each side of a connection says about itself in the handshake. */
typedef struct pangea_hello {
    uint32_t struct_size; /* sizeof(pangea_hello) */
    uint32_t node_id;     /* the sender's node id in the run */
    uint64_t run_id;      /* both sides must agree, else the connection is refused */
    uint32_t channel;     /* lets two nodes hold several logical connections (ring, recovery) */
} pangea_hello;

typedef struct pangea_transport_vtable {
    pangea_vtable_header header;

    /* Starts listening on `address` ("host:port"; port 0 picks a free one). Writes the address
     * peers should connect to into bound_address (NUL-terminated, at most bound_capacity bytes)
     * and a listener handle to *out_listener, released with close_listener(). */
    pangea_status (*listen)(void* instance, const char* address, pangea_listener** out_listener,
                            char* bound_address, size_t bound_capacity);

    /* Waits up to timeout_ms (negative: forever) for one incoming connection whose hello carries
     * our run id. Writes the peer's hello to *peer and a connection to *out_connection, released
     * with close(). Returns PANGEA_ERR_TIMEOUT when none arrived. */
    pangea_status (*accept)(void* instance, pangea_listener* listener, const pangea_hello* self,
                            int timeout_ms, pangea_hello* peer,
                            pangea_connection** out_connection);

    /* Connects to `address`, exchanges hellos, and writes a connection to *out_connection,
     * released with close(). The peer's hello goes to *peer. */
    pangea_status (*connect)(void* instance, const char* address, const pangea_hello* self,
                             int timeout_ms, pangea_hello* peer,
                             pangea_connection** out_connection);

    /* Starts sending `bytes` bytes of data (borrowed until the request completes). Writes a
     * request to *out_request, released by a test() or wait() that reports completion (any
     * status but PANGEA_ERR_AGAIN / PANGEA_ERR_TIMEOUT). */
    pangea_status (*isend)(void* instance, pangea_connection* connection, const void* data,
                           size_t bytes, pangea_request** out_request);

    /* Starts receiving exactly `bytes` bytes into data (borrowed until the request completes).
     * A message longer than `bytes` fails the request with PANGEA_ERR_CORRUPT and closes the
     * connection. Request ownership as for isend(). */
    pangea_status (*irecv)(void* instance, pangea_connection* connection, void* data,
                           size_t bytes, pangea_request** out_request);

    /* Non-blocking completion check: PANGEA_ERR_AGAIN while pending (the request stays valid);
     * otherwise the request's final status, and the request is released. */
    pangea_status (*test)(void* instance, pangea_request* request);

    /* Blocks up to timeout_ms (negative: forever) for the request. PANGEA_ERR_TIMEOUT leaves it
     * pending and valid; any other status is final and releases it. */
    pangea_status (*wait)(void* instance, pangea_request* request, int timeout_ms);

    /* Fails every pending and future operation on the connection with PANGEA_ERR_ABORTED and
     * wakes their waiters. Safe from any thread, idempotent. The handle stays valid until
     * close(). */
    void (*abort)(void* instance, pangea_connection* connection);

    /* Releases a connection. Pending requests on it complete with PANGEA_ERR_ABORTED first.
     * Accepts NULL. */
    void (*close)(void* instance, pangea_connection* connection);

    /* Stops listening and releases the listener. Accepts NULL. */
    void (*close_listener)(void* instance, pangea_listener* listener);
} pangea_transport_vtable;

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_TRANSPORT_H */
