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
 * thread. In particular abort() may race close() of the same connection on another thread, and
 * a request's wait() or test() may be in flight while its connection is aborted or closed.
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

/* What each side of a connection says about itself in the handshake. Size-led (rule 5 of
 * docs/plugin-abi.md) in both directions, so that either side may be built against a newer header:
 *  - `self` (the plugin reads it): struct_size is the caller's sizeof, at least
 *    PANGEA_HELLO_SIZE_1_0 (less is PANGEA_ERR_INVALID_ARGUMENT). The plugin reads no byte beyond
 *    struct_size and takes fields beyond it as zero.
 *  - `peer` (the plugin writes it): the caller sets struct_size to the size of its struct; a
 *    value below PANGEA_HELLO_SIZE_1_0 (0 included: ABI 1.0 did not ask callers to set it) counts
 *    as PANGEA_HELLO_SIZE_1_0. The plugin writes min(its sizeof, that size) bytes, nothing
 *    beyond, and sets struct_size to the count it wrote. */
typedef struct pangea_hello {
    uint32_t struct_size; /* see above */
    uint32_t node_id;     /* the sender's node id in the run */
    uint64_t run_id;      /* both sides must agree, else the connection is refused */
    uint32_t channel;     /* lets two nodes hold several logical connections (ring, recovery) */
} pangea_hello;

/* The size of a pangea_hello of ABI 1.0: sizeof then, tail padding included. Fields appended
 * later start at or beyond this offset (never in that padding), so that a 1.0 struct_size never
 * seems to cover them. */
#define PANGEA_HELLO_SIZE_1_0 24

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
     * close(); an abort() that races a close() of the same connection on another thread (the
     * mesh aborts a peer it declared dead while its owner may be closing the connection) either
     * aborts it or, coming after the close, does nothing. */
    void (*abort)(void* instance, pangea_connection* connection);

    /* Releases a connection. Pending requests on it complete with PANGEA_ERR_ABORTED first; the
     * requests themselves stay valid until their test() or wait() reports it. Accepts NULL. */
    void (*close)(void* instance, pangea_connection* connection);

    /* Stops listening and releases the listener. Accepts NULL. Not while another thread is in
     * accept() on it: the caller waits for that accept() to return (short timeouts help). */
    void (*close_listener)(void* instance, pangea_listener* listener);

    /* ---- Appended in 1.1. A vtable built against the 1.0 header ends before this slot, and
     * keeps loading: the host then uses the default (as for a NULL slot), which answers
     * PANGEA_ERR_UNSUPPORTED. */

    /* The transport's own all-reduce: sums `count` floats of `data` in place across a ring of
     * `world` ranks, where this caller is `rank`, `next` is its connection to rank (rank + 1) %
     * world and `previous` its connection from rank (rank - 1) % world (for world 2, two
     * different connections to the same peer). Every rank of the ring calls it at the same time
     * with the same world and count; while it runs, the caller has no other operation pending on
     * either connection. On PANGEA_OK every rank holds the same bits (bit-identical sums,
     * whatever order the plugin adds in); world 1 returns at once with data unchanged.
     *
     * Returns PANGEA_ERR_UNSUPPORTED, before touching either connection or data, when the
     * instance is not configured to do it (the caller then runs its own all-reduce), and
     * PANGEA_ERR_INVALID_ARGUMENT, also touching nothing, for NULL or unknown handles or
     * rank >= world. Any other failure leaves data unspecified and both connections failed or aborted (so that the
     * neighbours fail too, as with the core's ring): PANGEA_ERR_ABORTED when abort() was called
     * on either connection, PANGEA_ERR_PEER_LOST when a peer went away, PANGEA_ERR_TIMEOUT when
     * no progress came for timeout_ms (negative: no limit), PANGEA_ERR_INVALID_ARGUMENT or
     * PANGEA_ERR_CORRUPT when the ranks disagree on world, rank or count. It never waits past
     * the first of these; `data` is not touched after it returns. */
    pangea_status (*allreduce_sum_f32)(void* instance, pangea_connection* next, pangea_connection* previous,
                                       uint32_t rank, uint32_t world, float* data, size_t count, int timeout_ms);
} pangea_transport_vtable;

/* The size of a transport vtable of ABI 1.0: every slot before this offset is required. */
#define PANGEA_TRANSPORT_VTABLE_SIZE_1_0 (offsetof(pangea_transport_vtable, allreduce_sum_f32))
/* ... and of ABI 1.1 (unchanged in 1.2). */
#define PANGEA_TRANSPORT_VTABLE_SIZE_1_1 \
    (offsetof(pangea_transport_vtable, allreduce_sum_f32) + sizeof(void (*)(void)))

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_TRANSPORT_H */
