/*
 * pangea/compress.h: compression plugins (PANGEA_KIND_COMPRESS).
 *
 * A compressor turns a run of fp32 values into bytes for the wire and back. Every call works on
 * one caller-owned piece of a pseudo-gradient (up to 2^18 values; any length must work). The codec
 * chooses how nodes' contributions are combined: along a ring (the default: every hop decodes,
 * adds and re-encodes partial sums) or by all-gather (PANGEA_COMPRESS_CAP_GATHER: each node's
 * contribution is encoded once and every node decodes them all). The hot path of both is
 * decode_accumulate(), which adds decoded values into an fp32 accumulator without a temporary
 * buffer.
 *
 * Determinism: encode() is a pure function of its input and the instance's settings. The same
 * floats give the same bytes on every machine, every run and every thread count; the
 * all-reduce's bit parity across nodes depends on it.
 *
 * Threads: one instance is used by one thread at a time; the host makes one instance per thread
 * that needs one.
 */
#ifndef PANGEA_COMPRESS_H
#define PANGEA_COMPRESS_H

#include "pangea/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Capability flags returned by capabilities(). */
/* The scheme loses information and wants error feedback. The host keeps, per node and in host
 * memory, the residual of the node's own contribution (input minus decode(encode(input)), which
 * is exact in gather aggregation and, in ring aggregation, what encoding the node's contribution
 * alone would lose) and adds it to the next outer step's contribution. Hosts of ABI 1.4 and later
 * act on it; the residual is part of checkpoints (docs/plugins/compress.md, "Error feedback"). */
#define PANGEA_COMPRESS_CAP_ERROR_FEEDBACK ((uint64_t)1 << 0)
/* (1.2) The scheme is the identity: encode() writes the n floats' own bytes (4n, host byte
 * order) and decode() reads them back unchanged. The host may then skip the codec and move the
 * caller's buffer as it is (the ring all-reduce does: no copy, no encoded buffer). */
#define PANGEA_COMPRESS_CAP_IDENTITY ((uint64_t)1 << 1)
/* (1.4) Gather aggregation: the encoding is not meant to be summed along a ring (a sparse top-k,
 * a 4-bit code). Each node encodes only its own contribution, once, piece by piece; the encoded
 * messages are all-gathered (forwarded verbatim) and every node decodes and adds all of them with
 * decode_accumulate(), in the same order (node 0 first), so every node ends with the same bits.
 * Messages take the bytes encode() wrote, not max_encoded_size(). Without the flag the host
 * reduces along a ring: every hop decodes, adds and re-encodes partial sums ("ring"
 * aggregation). A host older than 1.4 does not know the flag and would use the ring, so a library
 * with a plugin that sets it refuses older hosts in the handshake (the SDK does this for a class
 * whose min_host_abi_minor is 4). */
#define PANGEA_COMPRESS_CAP_GATHER ((uint64_t)1 << 2)

typedef struct pangea_compress_vtable {
    pangea_vtable_header header;

    /* The largest number of bytes encode() can write for n values. Never fails; the host sizes
     * buffers with it. */
    size_t (*max_encoded_size)(void* instance, size_t n);

    /* Encodes n values from src (borrowed, read only) into dst (borrowed, dst_capacity bytes) and
     * writes the byte count to *written. Returns PANGEA_ERR_CAPACITY if dst is too small,
     * PANGEA_ERR_INVALID_DATA if src holds a value the scheme refuses (NaN or Inf for lossy
     * schemes). On failure nothing is promised about dst's contents and *written is untouched. */
    pangea_status (*encode)(void* instance, const float* src, size_t n, uint8_t* dst,
                            size_t dst_capacity, size_t* written);

    /* Decodes `bytes` bytes of src (borrowed) into n values at dst (borrowed). Returns
     * PANGEA_ERR_CORRUPT for a bad header, a truncated or overlong buffer, or an n that does not
     * match what was encoded. On failure dst may be partly written. */
    pangea_status (*decode)(void* instance, const uint8_t* src, size_t bytes, float* dst,
                            size_t n);

    /* Like decode(), but adds the decoded values into acc[0..n) instead of storing them. On
     * PANGEA_ERR_CORRUPT acc is untouched: input is validated before anything is added. */
    pangea_status (*decode_accumulate)(void* instance, const uint8_t* src, size_t bytes,
                                       float* acc, size_t n);

    /* PANGEA_COMPRESS_CAP_* flags of this instance. */
    uint64_t (*capabilities)(void* instance);

    /* ---- Appended in 1.2. A vtable built against an older header ends before these; the host
     * then uses the default given with each slot, and so does it for a NULL slot. */

    /* The largest relative L2 error, |decode(encode(x)) - x| / |x|, this instance promises for
     * finite input of any length (0 for a lossless scheme; a 1-bit scheme may promise 0.8).
     * Never fails. pangea-plugin-check holds round trips to it. Default: 0.1. */
    double (*error_bound)(void* instance);
} pangea_compress_vtable;

/* The size of a compress vtable of ABI 1.0 and 1.1: every slot before this is required. */
#define PANGEA_COMPRESS_VTABLE_SIZE_1_0 (offsetof(pangea_compress_vtable, error_bound))
/* The default of error_bound for a plugin without the slot. */
#define PANGEA_COMPRESS_DEFAULT_ERROR_BOUND 0.1

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_COMPRESS_H */
