// Gather aggregation: one RingAllReduce::run() by all-gather (collective/ring_allreduce.hpp).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "collective/pass_control.hpp"
#include "collective/ring_allreduce.hpp"
#include "pangea/compress.h"

namespace pangea {

// Each rank's message is its contribution encoded piece by piece (pieces of piece_values values,
// the last one shorter). On the wire a message is its header, the pieces' encoded sizes (one
// uint64 per piece, host byte order), then each piece that is not empty, as the codec wrote it.
// At step s a rank sends the message of rank (rank - s) (its own at step 0) and receives that of
// rank (rank - s - 1), which it forwards at step s + 1 item by item as they arrive: the header,
// then piece by piece. Up to `depth` pieces per direction are in flight. All messages are kept
// until the end, when every rank decodes and adds them in rank order.
class RingAllReduce::GatherPass {
public:
    GatherPass(RingAllReduce& ring, std::span<float> work, float scale, std::span<float> residual)
        : ring_(ring),
          control_(ring.next_, ring.previous_, ring.options_.stall_timeout_ms),
          work_(work),
          scale_(scale),
          residual_(residual),
          pieces_(std::max<size_t>(1, (work.size() + piece_values() - 1) / piece_values())),
          messages_(static_cast<size_t>(ring.world_)) {}

    void run() {
        encode_own();
        control_.run([&] { send_all(); }, [&] { receive_all(); });
        sum_all();
    }

    std::atomic<uint64_t> bytes_sent{0};
    std::atomic<uint64_t> bytes_received{0};

private:
    struct Message {
        std::vector<uint64_t> sizes;  // per piece, as received (or encoded)
        std::vector<size_t> offsets;  // where each piece starts in `bytes`
        std::vector<uint8_t> bytes;   // the pieces, back to back
        std::span<const uint8_t> piece(size_t p) const { return {bytes.data() + offsets[p], sizes[p]}; }
    };

    size_t piece_values() const { return ring_.options_.piece_values; }
    std::span<float> piece(std::span<float> values, size_t p) const {
        const size_t begin = std::min(values.size(), p * piece_values());
        return values.subspan(begin, std::min(piece_values(), values.size() - begin));
    }
    const pangea_compress_vtable& codec() const { return ring_.compressor_.vtable<pangea_compress_vtable>(); }
    void* handle() const { return ring_.compressor_.handle(); }
    size_t position(long long offset) const {  // the rank `offset` places after this one
        const long long world = ring_.world_;
        return static_cast<size_t>(((ring_.rank_ + offset) % world + world) % world);
    }
    size_t items() const { return 1 + pieces_; }  // per step: the header, then the pieces

    // This rank's message, and what encoding lost of its contribution (the error feedback's residual).
    void encode_own() {
        Message& own = messages_[position(0)];
        own.sizes.resize(pieces_);
        own.offsets.resize(pieces_);
        for (size_t p = 0; p < pieces_; ++p) {
            const std::span<const float> values = piece(work_, p);
            const size_t begin = own.bytes.size();
            own.bytes.resize(begin + codec().max_encoded_size(handle(), values.size()));
            size_t written = 0;
            const pangea_status status = codec().encode(handle(), values.data(), values.size(), own.bytes.data() + begin,
                                                        own.bytes.size() - begin, &written);
            if (status != PANGEA_OK) fail(status, ring_.compressor_.describe_failure("encode", status));
            if (written > own.bytes.size() - begin)
                fail(PANGEA_ERR_INTERNAL, ring_.compressor_.plugin().id() + "'s encode claims " + std::to_string(written) +
                                              " bytes written into " + std::to_string(own.bytes.size() - begin));
            own.bytes.resize(begin + written);
            own.offsets[p] = begin;
            own.sizes[p] = written;
        }
        if (residual_.empty()) return;
        for (size_t p = 0; p < pieces_; ++p) {
            const std::span<float> lost = piece(residual_, p);
            const std::span<const uint8_t> bytes = own.piece(p);
            const pangea_status status = codec().decode(handle(), bytes.data(), bytes.size(), lost.data(), lost.size());
            if (status != PANGEA_OK) fail(status, ring_.compressor_.describe_failure("decode of its own encoding", status));
            const std::span<const float> sent = piece(work_, p);
            for (size_t i = 0; i < lost.size(); ++i) lost[i] = sent[i] - lost[i];
        }
    }

    // Before or after the two directions run: as a failure inside them, the links go too (the
    // neighbours fail at once).
    [[noreturn]] void fail(pangea_status status, const std::string& error) {
        control_.raise(status, "all-reduce: " + error);
    }

    void send_all() {
        const size_t depth = std::max<size_t>(1, ring_.options_.depth);
        std::vector<Request> slots(depth);
        size_t sent = 0;  // sends started
        const auto send = [&](const void* data, size_t bytes) {
            Request& slot = slots[sent++ % depth];
            if (slot.pending()) control_.complete(slot, "send");
            pangea_status status;
            slot = ring_.next_.send(data, bytes, &status);
            if (status != PANGEA_OK)
                control_.raise(status, "all-reduce: isend failed: " + ring_.next_.transport().last_error());
            bytes_sent += bytes;
        };
        for (int step = 0; step + 1 < ring_.world_; ++step) {
            const Message& message = messages_[position(-step)];
            // From step 1 on it forwards what arrived at the step before, item by item.
            const auto arrived = [&](size_t item) {
                return step == 0 || control_.wait_consumed(static_cast<size_t>(step - 1) * items() + item);
            };
            if (!arrived(0)) return;
            send(message.sizes.data(), pieces_ * sizeof(uint64_t));
            for (size_t p = 0; p < pieces_; ++p) {
                if (!arrived(1 + p)) return;
                if (message.sizes[p] > 0) send(message.bytes.data() + message.offsets[p], message.sizes[p]);
            }
        }
        for (Request& slot : slots)
            if (slot.pending()) control_.complete(slot, "send");
    }

    void receive_all() {
        const size_t depth = std::max<size_t>(1, ring_.options_.depth);
        std::vector<Request> slots(depth);
        const auto receive = [&](Request& slot, void* data, size_t bytes) {
            pangea_status status;
            slot = ring_.previous_.receive(data, bytes, &status);
            if (status != PANGEA_OK)
                control_.raise(status, "all-reduce: irecv failed: " + ring_.previous_.transport().last_error());
        };
        for (int step = 0; step + 1 < ring_.world_; ++step) {
            const size_t from = position(-step - 1);
            Message& message = messages_[from];
            message.sizes.resize(pieces_);
            receive(slots[0], message.sizes.data(), pieces_ * sizeof(uint64_t));
            control_.complete(slots[0], "receive");
            bytes_received += pieces_ * sizeof(uint64_t);
            check_sizes(message, from);
            control_.consumed(static_cast<size_t>(step) * items() + 1);
            // The pieces, up to `depth` posted ahead of the one completed next.
            size_t posted = 0;
            const auto post = [&] {
                const size_t p = posted++;
                if (message.sizes[p] > 0)
                    receive(slots[p % depth], message.bytes.data() + message.offsets[p], message.sizes[p]);
            };
            while (posted < pieces_ && posted < depth) post();
            for (size_t p = 0; p < pieces_; ++p) {
                if (slots[p % depth].pending()) control_.complete(slots[p % depth], "receive");
                bytes_received += message.sizes[p];
                control_.consumed(static_cast<size_t>(step) * items() + 2 + p);
                if (posted < pieces_) post();
            }
        }
    }

    // A header from the wire: no piece may claim more than the codec can write for it (nothing
    // is allocated for a size a peer made up).
    void check_sizes(Message& message, size_t from) {
        message.offsets.resize(pieces_);
        size_t total = 0;
        for (size_t p = 0; p < pieces_; ++p) {
            const size_t values = piece(work_, p).size();
            const size_t most = codec().max_encoded_size(handle(), values);
            if (message.sizes[p] > most)
                control_.raise(PANGEA_ERR_CORRUPT,
                               "all-reduce: the gathered message of ring position " + std::to_string(from) + " says piece " +
                                   std::to_string(p) + " is " + std::to_string(message.sizes[p]) + " bytes; " +
                                   ring_.compressor_.plugin().id() + " writes at most " + std::to_string(most) + " for " +
                                   std::to_string(values) + " values");
            message.offsets[p] = total;
            total += message.sizes[p];
        }
        message.bytes.resize(total);
    }

    // Every rank adds the same messages in the same order (rank 0 first): the same bits everywhere.
    void sum_all() {
        std::fill(work_.begin(), work_.end(), 0.0f);
        for (size_t from = 0; from < messages_.size(); ++from)
            for (size_t p = 0; p < pieces_; ++p) {
                const std::span<float> values = piece(work_, p);
                const std::span<const uint8_t> bytes = messages_[from].piece(p);
                const pangea_status status =
                    codec().decode_accumulate(handle(), bytes.data(), bytes.size(), values.data(), values.size());
                if (status != PANGEA_OK)
                    fail(status, "the gathered message of ring position " + std::to_string(from) + ", piece " +
                                     std::to_string(p) + ": " +
                                     ring_.compressor_.describe_failure("decode_accumulate", status));
            }
        if (scale_ != 1.0f)
            for (float& v : work_) v *= scale_;
    }

    RingAllReduce& ring_;
    PassControl control_;
    std::span<float> work_;
    float scale_;
    std::span<float> residual_;
    size_t pieces_;
    std::vector<Message> messages_;  // by rank
};

void RingAllReduce::run_gather(std::span<float> data, float scale, std::span<float> residual, AllReduceResult* result) {
    GatherPass pass(*this, data, scale, residual);
    try {
        pass.run();
    } catch (const PassFailure& failure) {  // the links were aborted before it was thrown
        result->status = failure.status;
        result->error = failure.error;
    }
    result->bytes_sent = pass.bytes_sent;
    result->bytes_received = pass.bytes_received;
}

}  // namespace pangea
