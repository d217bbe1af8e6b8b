#include "collective/ring_allreduce.hpp"

#include "collective/pass_control.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/log.hpp"
#include "pangea/compress.h"

namespace pangea {
namespace {

// A piece on the wire: its encoded length, the encoded bytes, then zero padding up to the
// compressor's max_encoded_size, so that the receiver knows every message's exact size.
constexpr size_t kLengthPrefix = sizeof(uint64_t);

size_t mod(long long value, int world) { return static_cast<size_t>(((value % world) + world) % world); }

}  // namespace

// One run() as a dataflow of pieces. Every message is a piece (p) of a chunk at a step (s):
//   reduce-scatter step s sends chunk (rank - s) and receives chunk (rank - s - 1), adding it in;
//   all-gather step s sends chunk (rank + 1 - s) and receives chunk (rank - s), replacing.
// A send of piece p at step s >= 1 needs only piece p of the previous step's receive (same
// chunk), so steps overlap piece by piece instead of waiting for whole chunks, and the link
// never idles at a step boundary. The calling thread sends, a second thread receives; up to
// `depth` messages per direction are in flight. The compressor is used by one thread at a time.
class RingAllReduce::Pass {
public:
    Pass(RingAllReduce& ring, std::span<float> work, float scale, std::span<float> residual)
        : ring_(ring), control_(ring.next_, ring.previous_, ring.options_.stall_timeout_ms), work_(work), scale_(scale),
          residual_(residual), raw_(ring.identity_codec()) {
        const int steps = ring.world_ - 1;
        std::vector<size_t> first_receive;  // index of (phase, step)'s first receive
        for (int phase = 0; phase < 2; ++phase)
            for (int step = 0; step < steps; ++step) {
                const size_t send = phase == 0 ? mod(ring.rank_ - step, ring.world_) : mod(ring.rank_ + 1 - step, ring.world_);
                const size_t receive = phase == 0 ? mod(ring.rank_ - step - 1, ring.world_) : mod(ring.rank_ - step, ring.world_);
                for (size_t p = 0; p < pieces(send); ++p) sends_.push_back({phase, step, send, p, kNone});
                first_receive.push_back(receives_.size());
                for (size_t p = 0; p < pieces(receive); ++p) receives_.push_back({phase, step, receive, p, kNone});
            }
        // Link each send to the receive of the same piece one step earlier (the all-gather's
        // first step: the reduce-scatter's last), and that receive back to the send.
        for (size_t i = 0; i < sends_.size(); ++i) {
            Item& send = sends_[i];
            if (send.phase == 0 && send.step == 0) continue;  // the rank's own data
            const int phase = send.phase == 1 && send.step == 0 ? 0 : send.phase;
            const int step = send.step == 0 ? steps - 1 : send.step - 1;
            send.partner = first_receive[static_cast<size_t>(phase * steps + step)] + send.piece;
            receives_[send.partner].partner = i;
        }
        ring.buffers_.messages.resize(sends_.size());
        ring.buffers_.send_slots.resize(std::max<size_t>(1, ring.options_.depth));
        ring.buffers_.receive_slots.resize(std::max<size_t>(1, ring.options_.depth));
    }

    // Runs both directions; returns once both are done, or throws the first failure.
    void run() {
        control_.run([&] { send_all(); }, [&] { receive_all(); });
    }

    std::atomic<uint64_t> bytes_sent{0};
    std::atomic<uint64_t> bytes_received{0};

private:
    static constexpr size_t kNone = SIZE_MAX;
    using Bytes = std::vector<uint8_t>;

    struct Item {
        int phase;  // 0: reduce-scatter, 1: all-gather
        int step;
        size_t chunk;
        size_t piece;
        size_t partner;  // sends: the receive it waits for; receives: the send that forwards it
    };

    // ---- the buffer's chunks and pieces

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
    std::span<float> values(const Item& item) const { return piece(item.chunk, item.piece); }

    // ---- compression (one thread at a time)

    const pangea_compress_vtable& codec() const { return ring_.compressor_.vtable<pangea_compress_vtable>(); }

    size_t message_bytes(size_t values) const {
        return kLengthPrefix + codec().max_encoded_size(ring_.compressor_.handle(), values);
    }
    static std::span<uint8_t> bytes_of(std::span<float> values) {
        return {reinterpret_cast<uint8_t*>(values.data()), values.size_bytes()};
    }

    void encode(std::span<const float> values, Bytes& message) {
        std::lock_guard<std::mutex> lock(codec_mutex_);
        message.resize(message_bytes(values.size()));
        size_t written = 0;
        const pangea_status status = codec().encode(ring_.compressor_.handle(), values.data(), values.size(),
                                                    message.data() + kLengthPrefix, message.size() - kLengthPrefix,
                                                    &written);
        if (status != PANGEA_OK) raise(status, ring_.compressor_.describe_failure("encode", status));
        if (written > message.size() - kLengthPrefix)
            raise(PANGEA_ERR_INTERNAL, ring_.compressor_.plugin().id() + "'s encode claims " + std::to_string(written) +
                                           " bytes written into " + std::to_string(message.size() - kLengthPrefix));
        const uint64_t length = written;
        std::memcpy(message.data(), &length, sizeof length);
        std::fill(message.begin() + kLengthPrefix + written, message.end(), 0);  // the padding, if any
    }

    void decode(std::span<const uint8_t> message, std::span<float> values, bool accumulate) {
        std::lock_guard<std::mutex> lock(codec_mutex_);
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

    [[noreturn]] void raise(pangea_status status, std::string error) { control_.raise(status, std::move(error)); }
    void complete(Request& request, const char* what) { control_.complete(request, what); }

    // ---- error feedback

    // What this rank's encoding of `sent` (as `message`) lost, times `unit`, into the residual at
    // the same positions. Each position is encoded by this rank exactly once per pass (its share of
    // a partial sum in reduce-scatter, or the reduced value it owns), so the ranks' residuals add
    // up to all that the sum lost.
    void keep_loss(std::span<const float> sent, const Bytes& message, float unit) {
        const std::span<float> lost = residual_.subspan(static_cast<size_t>(sent.data() - work_.data()), sent.size());
        decode(message, lost, /*accumulate=*/false);
        for (size_t i = 0; i < lost.size(); ++i) lost[i] = (sent[i] - lost[i]) * unit;
    }

    // ---- the two directions

    struct Slot {
        Bytes* buffer;  // one of the ring's reused slot buffers
        std::span<const uint8_t> message;
        Request request;
        Bytes* forwarded = nullptr;  // an all-gather message it sends, released once sent
    };

    // Completes a send slot's request and gives back the all-gather message it carried: the
    // all-gather's messages would otherwise add up to (world-1)/world of the encoded buffer.
    void complete_send(Slot& slot) {
        complete(slot.request, "send");
        if (slot.forwarded != nullptr) Bytes().swap(*slot.forwarded);
        slot.forwarded = nullptr;
    }

    void send_all() {
        const size_t depth = std::max<size_t>(1, ring_.options_.depth);
        std::vector<Slot> slots(depth);
        for (size_t k = 0; k < depth; ++k) slots[k].buffer = &ring_.buffers_.send_slots[k];
        for (size_t i = 0; i < sends_.size(); ++i) {
            const Item& item = sends_[i];
            Slot& slot = slots[i % depth];
            if (slot.request.pending()) complete_send(slot);
            // Wait until the piece it carries is here.
            if (item.partner != kNone && !control_.wait_consumed(item.partner)) return;
            if (raw_ && item.phase == 1) {
                slot.message = bytes_of(values(item));  // the values themselves: nothing to encode
            } else if (item.phase == 0) {
                encode(values(item), *slot.buffer);
                if (!residual_.empty()) keep_loss(values(item), *slot.buffer, 1.0f);
                slot.message = *slot.buffer;
            } else {
                slot.message = ring_.buffers_.messages[i];  // owner-encoded or received: sent verbatim
                slot.forwarded = &ring_.buffers_.messages[i];
            }
            pangea_status status;
            slot.request = ring_.next_.send(slot.message.data(), slot.message.size(), &status);
            if (status != PANGEA_OK) raise(status, "all-reduce: isend failed: " + ring_.next_.transport().last_error());
            bytes_sent += slot.message.size();
        }
        for (Slot& slot : slots)
            if (slot.request.pending()) complete_send(slot);
    }

    void receive_all() {
        const size_t depth = std::max<size_t>(1, ring_.options_.depth);
        std::vector<Slot> slots(depth);
        for (size_t k = 0; k < depth; ++k) slots[k].buffer = &ring_.buffers_.receive_slots[k];
        size_t posted = 0;
        auto post = [&] {
            const Item& item = receives_[posted];
            Slot& slot = slots[posted % depth];
            std::span<uint8_t> target;
            if (raw_ && item.phase == 1) {
                target = bytes_of(values(item));  // all-gather pieces land in place
            } else {
                // A received all-gather piece that is forwarded lands where its send will read it.
                Bytes& buffer = item.phase == 1 && item.partner != kNone ? ring_.buffers_.messages[item.partner] : *slot.buffer;
                buffer.resize(message_bytes(values(item).size()));
                target = buffer;
            }
            slot.message = target;
            pangea_status status;
            slot.request = ring_.previous_.receive(target.data(), target.size(), &status);
            if (status != PANGEA_OK)
                raise(status, "all-reduce: irecv failed: " + ring_.previous_.transport().last_error());
            ++posted;
        };
        while (posted < receives_.size() && posted < depth) post();
        for (size_t i = 0; i < receives_.size(); ++i) {
            const Item& item = receives_[i];
            Slot& slot = slots[i % depth];
            complete(slot.request, "receive");
            bytes_received += slot.message.size();
            const std::span<const uint8_t> message = slot.message;
            if (item.phase == 0) {
                decode(message, values(item), /*accumulate=*/true);
                if (item.step == ring_.world_ - 2) own(item);  // this piece is now fully reduced
            } else if (!raw_) {
                decode(message, values(item), /*accumulate=*/false);
            }
            control_.consumed(i + 1);
            if (posted < receives_.size()) post();
        }
    }

    // Owner quantizes: the fully reduced piece is (averaged,) encoded once for the all-gather, and
    // replaced by its own decoding, so that this rank holds what every other rank will decode.
    void own(const Item& item) {
        const std::span<float> piece_values = values(item);
        if (scale_ != 1.0f)
            for (float& v : piece_values) v *= scale_;
        if (raw_) return;  // sent as it is: every rank receives these very bits
        Bytes& message = ring_.buffers_.messages[item.partner];
        encode(piece_values, message);
        // (Lost of the average: as much again of a contribution, times the divisor.)
        if (!residual_.empty()) keep_loss(piece_values, message, 1.0f / scale_);
        decode(message, piece_values, /*accumulate=*/false);
    }

    RingAllReduce& ring_;
    PassControl control_;
    std::span<float> work_;
    float scale_;  // applied once to each fully reduced piece: 1 for a sum, 1/n for an average
    std::span<float> residual_;  // error feedback: what this rank's encodings lost (empty: none)
    // Uncompressed (compress/none, whose encoding is the fp32 values themselves), the all-gather
    // copies nothing: its pieces travel as the values themselves, sent from the buffer and
    // received into it, and the owner's piece needs no encode/decode round trip. Reduce-scatter
    // pieces are still encoded into a slot: the buffer a send reads must not be written before
    // the send completes, and the all-gather overwrites every chunk that reduce-scatter sent.
    bool raw_;
    std::vector<Item> sends_, receives_;

    std::mutex codec_mutex_;
};

bool wants_error_feedback(const PluginInstance& codec) {
    const auto& vt = codec.vtable<pangea_compress_vtable>();
    return (vt.capabilities(codec.handle()) & PANGEA_COMPRESS_CAP_ERROR_FEEDBACK) != 0;
}

std::string compression_of(const PluginInstance& codec, std::optional<Aggregation> aggregation) {
    const auto& vt = codec.vtable<pangea_compress_vtable>();
    const bool gather = aggregation ? *aggregation == Aggregation::kGather
                                    : (vt.capabilities(codec.handle()) & PANGEA_COMPRESS_CAP_GATHER) != 0;
    return codec.plugin().id() + ", " + (gather ? "gather" : "ring") + " aggregation";
}

RingAllReduce::RingAllReduce(int rank, int world, Link next, Link previous, const PluginInstance& compressor,
                             RingOptions options)
    : rank_(rank), world_(world), next_(next), previous_(previous), compressor_(compressor), options_(options) {
    if (world < 1 || rank < 0 || rank >= world)
        throw std::invalid_argument("RingAllReduce: rank " + std::to_string(rank) + " of world " + std::to_string(world));
    if (compressor.plugin().kind != PANGEA_KIND_COMPRESS)
        throw std::invalid_argument("RingAllReduce: " + compressor.plugin().id() + " is not a compressor");
    const auto& codec = compressor.vtable<pangea_compress_vtable>();
    const uint64_t capabilities = codec.capabilities(compressor.handle());
    identity_codec_ = (capabilities & PANGEA_COMPRESS_CAP_IDENTITY) != 0;
    aggregation_ = options.aggregation.value_or((capabilities & PANGEA_COMPRESS_CAP_GATHER) != 0 ? Aggregation::kGather
                                                                                                 : Aggregation::kRing);
}

AllReduceResult RingAllReduce::run(std::span<float> data, ReduceOp op, int contributors, std::span<float> residual) {
    const auto start = std::chrono::steady_clock::now();
    if (!residual.empty() && residual.size() != data.size())
        throw std::logic_error("RingAllReduce::run: a residual of " + std::to_string(residual.size()) + " values for " +
                               std::to_string(data.size()));
    AllReduceResult result;
    if (world_ == 1) {  // the sum and the average of one buffer is itself, nothing lost
        std::fill(residual.begin(), residual.end(), 0.0f);
        return result;
    }
    const int divisor = contributors > 0 ? contributors : world_;
    const float scale = op == ReduceOp::kAverage ? 1.0f / static_cast<float>(divisor) : 1.0f;
    if (aggregation_ == Aggregation::kGather) {
        run_gather(data, scale, residual, &result);
    } else {
        if (identity_codec()) std::fill(residual.begin(), residual.end(), 0.0f);  // (nothing is lost)
        if (!run_native(data, scale, &result)) {
            Pass pass(*this, data, scale, residual);
            try {
                pass.run();
            } catch (const PassFailure& failure) {  // the links were aborted before it was thrown
                result.status = failure.status;
                result.error = failure.error;
            }
            result.bytes_sent = pass.bytes_sent;
            result.bytes_received = pass.bytes_received;
        }
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

AllReduceResult run_rings(std::span<RingAllReduce> rings, std::span<const std::span<float>> ranges, ReduceOp op,
                          int contributors, std::span<const std::span<float>> residuals) {
    if (ranges.size() != rings.size() || (!residuals.empty() && residuals.size() != rings.size()))
        throw std::logic_error("run_rings: " + std::to_string(ranges.size()) + " ranges and " +
                               std::to_string(residuals.size()) + " residuals for " + std::to_string(rings.size()) +
                               " rings");
    const auto start = std::chrono::steady_clock::now();
    const size_t count = rings.size();
    auto residual = [&](size_t k) { return residuals.empty() ? std::span<float>() : residuals[k]; };
    std::vector<AllReduceResult> results(count);
    {
        std::vector<std::jthread> others;
        for (size_t k = 1; k < count; ++k)
            others.emplace_back([&, k] {
                try {
                    results[k] = rings[k].run(ranges[k], op, contributors, residual(k));
                } catch (const std::exception& e) {  // (not out of a thread: that would end the process)
                    results[k].status = PANGEA_ERR_INTERNAL;
                    results[k].error = e.what();
                }
            });
        results[0] = rings[0].run(ranges[0], op, contributors, residual(0));
    }
    AllReduceResult total = std::move(results[0]);
    for (size_t k = 1; k < count; ++k) {
        total.bytes_sent += results[k].bytes_sent;
        total.bytes_received += results[k].bytes_received;
        if (total.status == PANGEA_OK && results[k].status != PANGEA_OK) {
            total.status = results[k].status;
            total.error = "ring " + std::to_string(k) + " of " + std::to_string(count) + ": " + results[k].error;
        }
    }
    total.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return total;
}

bool RingAllReduce::run_native(std::span<float> work, float scale, AllReduceResult* result) {
    if (native_unsupported_ || !identity_codec()) return false;
    const PluginInstance& transport = next_.transport();
    const auto& vt = transport.vtable<pangea_transport_vtable>();
    const pangea_status status =
        vt.allreduce_sum_f32(transport.handle(), next_.connection(), previous_.connection(), static_cast<uint32_t>(rank_),
                             static_cast<uint32_t>(world_), work.data(), work.size(), options_.stall_timeout_ms);
    if (status == PANGEA_ERR_UNSUPPORTED) {  // nothing happened: our ring, now and from now on
        native_unsupported_ = true;
        return false;
    }
    static std::once_flag said;
    std::call_once(said, [&] {
        log(PANGEA_LOG_INFO, "collective",
            "uncompressed all-reduces run " + transport.plugin().id() + "'s own all-reduce (allreduce_sum_f32)");
    });
    result->native = true;
    if (status != PANGEA_OK) {  // as in our ring: both links go, so the neighbours fail too
        result->status = status;
        result->error = transport.describe_failure("allreduce_sum_f32", status);
        next_.abort();
        previous_.abort();
        return true;
    }
    if (scale != 1.0f)
        for (float& v : work) v *= scale;  // the same bits in, the same bits out, on every rank
    result->bytes_sent = result->bytes_received =
        2 * static_cast<uint64_t>(world_ - 1) * work.size() * sizeof(float) / static_cast<uint64_t>(world_);
    return true;
}

}  // namespace pangea
