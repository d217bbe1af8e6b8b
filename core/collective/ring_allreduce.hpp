// The compressed ring all-reduce on a flat fp32 buffer.
//
// Reduce-scatter, then all-gather, around a ring of `world` ranks; each rank sends to the next
// and receives from the previous one. Each chunk travels in pieces, and up to `depth` pieces per
// direction are in flight, so encoding, sending, receiving and decode-accumulate of different
// pieces overlap. Every hop is compressed with the compression plugin.
//
// Bit parity ("owner quantizes"): after reduce-scatter each rank owns one fully reduced chunk.
// It encodes that chunk once and replaces its own values with the decoded result; in all-gather
// the encoded bytes are forwarded verbatim and every rank decodes the same bytes. So every rank
// ends with bit-identical buffers, whatever the compressor's rounding.
//
// Gather aggregation (a codec with PANGEA_COMPRESS_CAP_GATHER, or [mesh] aggregation = "gather"):
// for codecs whose messages do not sum (sparse top-k, 4-bit codes). Each rank encodes its own
// contribution once, piece by piece; the messages go around the ring forwarded verbatim, each
// sent as it came: its piece sizes first, then the pieces, taking the bytes the codec wrote.
// Every rank then decodes and adds all of them in rank order, so all hold the same bits. A rank
// sends (world - 1) encoded contributions (the ring: 2 (world - 1) / world of one) and holds all
// world of them until they are summed.
//
// Uncompressed fp32 (compress/none) over a transport with an all-reduce of its own
// (allreduce_sum_f32 in transport.h, e.g. transport/gloo with allreduce = "gloo") that does not
// answer PANGEA_ERR_UNSUPPORTED: the transport sums and run() scales the sum for an average,
// the same way on every rank; its result says so (native). Failures are handled alike.
//
// In place: the pass works in the caller's buffer (no copy of it: at billions of parameters a
// copy is gigabytes), so after a failure the buffer holds partial sums; a caller that retries
// fills it again (the mesh asks the outer loop for the contribution once more). When a peer dies
// or stalls past `stall_timeout_ms`, or the compressor fails, the rank aborts both of its links
// (which makes its neighbours fail too, and so on around the ring) and returns the status with a
// message.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "collective/link.hpp"

namespace pangea {

enum class ReduceOp { kSum, kAverage };

// How the ranks' contributions combine (pangea/compress.h): reduced along the ring, every hop
// decoding, adding and re-encoding partial sums; or gathered, each rank's contribution encoded
// once, forwarded verbatim around the ring, and decoded and added by every rank in rank order.
enum class Aggregation { kRing, kGather };

struct RingOptions {
    size_t piece_values = size_t{1} << 18;  // values per piece (1 MiB of fp32)
    size_t depth = 4;                       // pieces in flight per direction
    int stall_timeout_ms = 30000;           // longest wait for any one piece
    // Unset: as the codec asks (PANGEA_COMPRESS_CAP_GATHER); [mesh] aggregation may say.
    std::optional<Aggregation> aggregation;
};

struct AllReduceResult {
    pangea_status status = PANGEA_OK;
    std::string error;  // what failed and where, when status != PANGEA_OK
    double seconds = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    std::vector<int> excluded_nodes;  // whose contributions the mesh left out (collective/contribution_check.hpp)
    bool native = false;  // the transport's own all-reduce did it (bytes are then 2(n-1)/n of the data)
    // This node is no longer a member of the run: nothing was averaged (status ABORTED). The
    // elastic all-reduce says where the run is (ElasticAllReduce::rejoin()).
    bool dropped = false;
};

// The codec asks for error feedback (PANGEA_COMPRESS_CAP_ERROR_FEEDBACK): the outer loop keeps
// a residual (diloco/outer_loop.hpp) and the all-reduce tells it what each contribution lost.
bool wants_error_feedback(const PluginInstance& codec);

// How contributions travel, in words every rank of a ring must share (the coordinator compares
// them): "compress/int8, ring aggregation". `aggregation` unset: the codec's. (Settings may differ:
// a frame says what a decoder needs, and fault injection differs by node.)
std::string compression_of(const PluginInstance& codec, std::optional<Aggregation> aggregation);

class RingAllReduce {
public:
    // `next` sends to rank (rank + 1) % world; `previous` receives from (rank - 1) % world.
    // `compressor` is used from the calling thread only. All must outlive this object.
    RingAllReduce(int rank, int world, Link next, Link previous, const PluginInstance& compressor,
                  RingOptions options = {});

    // Reduces `data` in place (see above: undefined after a failure). kAverage divides the sum
    // by `contributors` (0: by the world): the mesh passes fewer when it left some ranks'
    // contributions out (they send zeros). `residual`, when not empty (as long as `data`), gets
    // what this rank's encodings lost, for error feedback: in gather aggregation exactly data -
    // decode(encode(data)); along the ring, what encoding its share of the partial sums (and the
    // reduced values it owns, in units of a contribution) lost. Either way the ranks' residuals
    // add up to what the sum lost, so adding them to the next contributions loses nothing for
    // good. On failure it is undefined.
    AllReduceResult run(std::span<float> data, ReduceOp op, int contributors = 0, std::span<float> residual = {});

    Aggregation aggregation() const { return aggregation_; }

private:
    class Pass;        // the state of one run() along the ring
    class GatherPass;  // ... of one run() by all-gather (collective/gather_pass.cpp)
    void run_gather(std::span<float> data, float scale, std::span<float> residual, AllReduceResult* result);


    // The transport's own all-reduce, when it applies: true once it ran (result says how it went).
    bool run_native(std::span<float> data, float scale, AllReduceResult* result);
    bool identity_codec() const { return identity_codec_; }

    // Kept between runs so that repeated all-reduces (one per outer step) reuse their memory
    // instead of allocating and page-faulting it in every time; all-gather messages only live
    // from their receipt (or encoding) until they are sent.
    struct Buffers {
        std::vector<std::vector<uint8_t>> messages;  // per all-gather send
        std::vector<std::vector<uint8_t>> send_slots, receive_slots;
    };

    int rank_;
    int world_;
    Link next_;
    Link previous_;
    const PluginInstance& compressor_;
    RingOptions options_;
    Buffers buffers_;
    // The codec is the identity (PANGEA_COMPRESS_CAP_IDENTITY): the all-gather sends the
    // buffer as it is, and the transport's own all-reduce may do the whole job.
    bool identity_codec_;
    Aggregation aggregation_;
    bool native_unsupported_ = false;  // the transport answered PANGEA_ERR_UNSUPPORTED once
};

// Several rings at once ([mesh] rings): ring k reduces ranges[k] (every rank of a ring passes
// the same range of its buffer), ring 0 on the calling thread and each other on a thread of its
// own, so that each range travels over connections of its own (a flow of its own on the network,
// and its own core to compress on). `residuals`: empty, or ring k's range of the residual (run()).
// The time is the wall time until the last ring is done; bytes add up; the first failure is the
// result's (the failed ring aborted its links, so its neighbours fail too).
AllReduceResult run_rings(std::span<RingAllReduce> rings, std::span<const std::span<float>> ranges, ReduceOp op,
                          int contributors = 0, std::span<const std::span<float>> residuals = {});

}  // namespace pangea
