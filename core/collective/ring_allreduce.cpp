#include "collective/ring_allreduce.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <vector>

#include "pangea/compress.h"

namespace pangea {
namespace {

// A piece on the wire: its encoded length, the encoded bytes, then zero padding up to the
// compressor's max_encoded_size, so that the receiver knows every message's exact size.
constexpr size_t kLengthPrefix = sizeof(uint64_t);

// Thrown inside a pass; run() turns it into the result.
struct Failure {
    pangea_status status;
    std::string error;
};

size_t mod(long long value, int world) { return static_cast<size_t>(((value % world) + world) % world); }

}  // namespace

class RingAllReduce::Pass {
public:
    Pass(RingAllReduce& ring, std::span<float> work) : ring_(ring), work_(work) {}

    void reduce_scatter() {
        for (int step = 0; step < ring_.world_ - 1; ++step) {
            const size_t send = mod(ring_.rank_ - step, ring_.world_);
            const size_t receive = mod(ring_.rank_ - step - 1, ring_.world_);
            exchange(
                pieces(send),
                [&](size_t p, std::vector<uint8_t>& slot) {
                    encode(piece(send, p), slot);
                    return std::span<const uint8_t>(slot);
                },
                pieces(receive),
                [&](size_t p, std::vector<uint8_t>& slot) {
                    slot.resize(message_bytes(piece(receive, p).size()));
                    return std::span<uint8_t>(slot);
                },
                [&](size_t p, std::span<const uint8_t> message) {
                    decode(message, piece(receive, p), /*accumulate=*/true);
                });
        }
    }

    // Owner quantizes, then the encoded chunks go round verbatim.
    void all_gather(ReduceOp op) {
        const size_t owned = mod(ring_.rank_ + 1, ring_.world_);
        if (op == ReduceOp::kAverage) {
            const float scale = 1.0f / static_cast<float>(ring_.world_);
            for (size_t p = 0; p < pieces(owned); ++p)
                for (float& v : piece(owned, p)) v *= scale;
        }
        std::vector<std::vector<uint8_t>> outgoing(pieces(owned)), incoming;
        for (size_t p = 0; p < outgoing.size(); ++p) {
            encode(piece(owned, p), outgoing[p]);
            decode(outgoing[p], piece(owned, p), /*accumulate=*/false);
        }
        for (int step = 0; step < ring_.world_ - 1; ++step) {
            const size_t receive = mod(ring_.rank_ - step, ring_.world_);
            // Received pieces land in `incoming` and are forwarded from there at the next step.
            incoming.resize(pieces(receive));
            exchange(
                outgoing.size(), [&](size_t p, std::vector<uint8_t>&) { return std::span<const uint8_t>(outgoing[p]); },
                incoming.size(),
                [&](size_t p, std::vector<uint8_t>&) {
                    incoming[p].resize(message_bytes(piece(receive, p).size()));
                    return std::span<uint8_t>(incoming[p]);
                },
                [&](size_t p, std::span<const uint8_t> message) {
                    decode(message, piece(receive, p), /*accumulate=*/false);
                });
            outgoing.swap(incoming);
        }
    }

    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;

private:
    // Aborts both links first, so that the requests still in flight end at once while the stack
    // unwinds (their destructors wait for them), and the neighbours learn of the failure.
    [[noreturn]] void raise(pangea_status status, std::string error) const {
        ring_.next_.abort();
        ring_.previous_.abort();
        throw Failure{status, std::move(error)};
    }

    std::span<float> chunk(size_t c) const {
        const size_t n = work_.size(), world = static_cast<size_t>(ring_.world_);
        const size_t begin = c * n / world, end = (c + 1) * n / world;
        return work_.subspan(begin, end - begin);
    }
    size_t pieces(size_t c) const {  // at least one, so that empty chunks still take part
        return std::max<size_t>(1, (chunk(c).size() + ring_.options_.piece_values - 1) / ring_.options_.piece_values);
    }
    std::span<float> piece(size_t c, size_t p) const {
        const std::span<float> whole = chunk(c);
        const size_t begin = std::min(whole.size(), p * ring_.options_.piece_values);
        return whole.subspan(begin, std::min(ring_.options_.piece_values, whole.size() - begin));
    }

    const pangea_compress_vtable& codec() const { return ring_.compressor_.vtable<pangea_compress_vtable>(); }

    size_t message_bytes(size_t values) const {
        return kLengthPrefix + codec().max_encoded_size(ring_.compressor_.handle(), values);
    }

    void encode(std::span<const float> values, std::vector<uint8_t>& message) const {
        message.resize(message_bytes(values.size()));
        size_t written = 0;
        const pangea_status status = codec().encode(ring_.compressor_.handle(), values.data(), values.size(),
                                                    message.data() + kLengthPrefix, message.size() - kLengthPrefix,
                                                    &written);
        if (status != PANGEA_OK) raise(status, ring_.compressor_.describe_failure("encode", status));
        const uint64_t length = written;
        std::memcpy(message.data(), &length, sizeof length);
        std::fill(message.begin() + kLengthPrefix + written, message.end(), 0);  // the padding, if any
    }

    void decode(std::span<const uint8_t> message, std::span<float> values, bool accumulate) const {
        uint64_t length = 0;
        std::memcpy(&length, message.data(), sizeof length);
        if (length > message.size() - kLengthPrefix)
            raise(PANGEA_ERR_CORRUPT, "all-reduce: a piece claims " + std::to_string(length) +
                                                  " encoded bytes in a message of " + std::to_string(message.size()));
        const auto fn = accumulate ? codec().decode_accumulate : codec().decode;
        const pangea_status status =
            fn(ring_.compressor_.handle(), message.data() + kLengthPrefix, length, values.data(), values.size());
        if (status != PANGEA_OK)
            raise(status, ring_.compressor_.describe_failure(accumulate ? "decode_accumulate" : "decode", status));
    }

    void complete(Request& request, const char* what) {
        const pangea_status status = request.wait(ring_.options_.stall_timeout_ms);
        if (status == PANGEA_OK) return;
        if (status == PANGEA_ERR_TIMEOUT)
            raise(PANGEA_ERR_PEER_LOST, std::string("all-reduce: no progress on a ") + what + " for " +
                                                    std::to_string(ring_.options_.stall_timeout_ms) +
                                                    " ms: the peer is stalled");
        raise(status, std::string("all-reduce: ") + what + " failed with " + status_name(status) + ": " +
                                  request.error());
    }

    // Sends send_count messages to the next rank and receives receive_count from the previous
    // one, with up to `depth` of each in flight. produce(p, slot) returns message p to send
    // (built in the slot's buffer, or kept elsewhere until the exchange ends); place(p, slot)
    // returns where message p is to be received; consume(p, message) uses it once it is there.
    using Bytes = std::vector<uint8_t>;
    void exchange(size_t send_count, const std::function<std::span<const uint8_t>(size_t, Bytes&)>& produce,
                  size_t receive_count, const std::function<std::span<uint8_t>(size_t, Bytes&)>& place,
                  const std::function<void(size_t, std::span<const uint8_t>)>& consume) {
        const size_t depth = std::max<size_t>(1, ring_.options_.depth);
        struct Slot {
            Bytes buffer;
            std::span<uint8_t> message;  // receives: where this slot's message lands
            Request request;
        };
        std::vector<Slot> sends(depth), receives(depth);
        size_t sent = 0, posted = 0, received = 0;
        auto post_receive = [&] {
            Slot& slot = receives[posted % depth];
            slot.message = place(posted, slot.buffer);
            pangea_status status;
            slot.request = ring_.previous_.receive(slot.message.data(), slot.message.size(), &status);
            if (status != PANGEA_OK)
                raise(status, "all-reduce: irecv failed: " + ring_.previous_.transport().last_error());
            ++posted;
        };
        while (posted < receive_count && posted < depth) post_receive();
        while (sent < send_count || received < receive_count) {
            if (sent < send_count) {
                Slot& slot = sends[sent % depth];
                if (slot.request.pending()) complete(slot.request, "send");
                const std::span<const uint8_t> message = produce(sent, slot.buffer);
                pangea_status status;
                slot.request = ring_.next_.send(message.data(), message.size(), &status);
                if (status != PANGEA_OK)
                    raise(status, "all-reduce: isend failed: " + ring_.next_.transport().last_error());
                bytes_sent += message.size();
                ++sent;
            }
            if (received < receive_count) {
                Slot& slot = receives[received % depth];
                complete(slot.request, "receive");
                bytes_received += slot.message.size();
                consume(received, slot.message);
                ++received;
                if (posted < receive_count) post_receive();
            }
        }
        for (Slot& slot : sends)
            if (slot.request.pending()) complete(slot.request, "send");
    }

    RingAllReduce& ring_;
    std::span<float> work_;
};

RingAllReduce::RingAllReduce(int rank, int world, Link next, Link previous, const PluginInstance& compressor,
                             RingOptions options)
    : rank_(rank), world_(world), next_(next), previous_(previous), compressor_(compressor), options_(options) {
    if (world < 1 || rank < 0 || rank >= world)
        throw std::invalid_argument("RingAllReduce: rank " + std::to_string(rank) + " of world " + std::to_string(world));
    if (compressor.plugin().kind != PANGEA_KIND_COMPRESS)
        throw std::invalid_argument("RingAllReduce: " + compressor.plugin().id() + " is not a compressor");
}

AllReduceResult RingAllReduce::run(std::span<float> data, ReduceOp op) {
    const auto start = std::chrono::steady_clock::now();
    AllReduceResult result;
    if (world_ == 1) return result;  // the sum and the average of one buffer is itself
    std::vector<float> work(data.begin(), data.end());  // the caller's buffer stays intact on failure
    Pass pass(*this, work);
    try {
        pass.reduce_scatter();
        pass.all_gather(op);
        std::copy(work.begin(), work.end(), data.begin());
    } catch (const Failure& failure) {  // the links were aborted before it was thrown
        result.status = failure.status;
        result.error = failure.error;
    }
    result.bytes_sent = pass.bytes_sent;
    result.bytes_received = pass.bytes_received;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

}  // namespace pangea
