// WorkerGroup over Gloo (Debian's libgloo): a full mesh of TCP pairs on loopback, met through a
// FileStore in the rendezvous directory; ring all-reduce and one-to-all broadcast.
#include <gloo/allgatherv.h>
#include <gloo/allreduce.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/reduce.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>
#include <signal.h>

#include <vector>

#include "workers/worker_group.hpp"

namespace pangea {
namespace {

class GlooGroup final : public WorkerGroup {
public:
    GlooGroup(const std::filesystem::path& rendezvous, int rank, int size, std::chrono::milliseconds timeout)
        : WorkerGroup(rank, size, timeout) {
        gloo::transport::tcp::attr attr;
        attr.hostname = "127.0.0.1";
        // Gloo's event-loop thread inherits the mask: a worker gone mid-write is an error, not SIGPIPE.
        sigset_t pipe, old;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe, &old);
        try {
            device_ = gloo::transport::tcp::CreateDevice(attr);
            pthread_sigmask(SIG_SETMASK, &old, nullptr);
        } catch (...) {
            pthread_sigmask(SIG_SETMASK, &old, nullptr);
            throw;
        }
        gloo::rendezvous::FileStore files(rendezvous.string());
        gloo::rendezvous::PrefixStore store("workers", files);
        context_ = std::make_shared<gloo::rendezvous::Context>(rank, size);
        context_->setTimeout(timeout);
        try {
            context_->connectFullMesh(store, device_);
        } catch (const std::exception& e) {
            throw WorkerGroupError("worker " + std::to_string(rank) + " of " + std::to_string(size) +
                                   ": the node's workers did not all meet in " + rendezvous.string() + " within " +
                                   std::to_string(timeout.count()) + " ms (" + e.what() + ")");
        }
    }

    void all_reduce_sum(std::span<float> data) override {
        if (data.empty()) return;
        run("all-reduce", [&] {
            gloo::AllreduceOptions options(context_);
            options.setOutput(data.data(), data.size());
            options.setReduceFunction(
                static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
            options.setTag(next_tag());
            gloo::allreduce(options);
        });
    }

    void all_gather(std::span<float> data, std::span<const size_t> counts) override {
        if (data.empty()) return;
        run("all-gather", [&] {
            gloo::AllgathervOptions options(context_);
            options.setOutput(data.data(), std::vector<size_t>(counts.begin(), counts.end()));  // in place
            options.setTag(next_tag());
            gloo::allgatherv(options);
        });
    }

    // One reduce per part, to its worker: each moves the part's size, as a reduce-scatter would.
    void reduce_scatter_sum(std::span<float> data, std::span<const size_t> counts) override {
        run("reduce-scatter", [&] {
            size_t offset = 0;
            for (int k = 0; k < size(); ++k) {
                const size_t count = counts[static_cast<size_t>(k)];
                const uint32_t tag = next_tag();
                if (count > 0) {
                    gloo::ReduceOptions options(context_);
                    options.setOutput(data.data() + offset, count);  // in place
                    options.setRoot(k);
                    options.setReduceFunction(
                        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
                    options.setTag(tag);
                    gloo::reduce(options);
                }
                offset += count;
            }
        });
    }

    void send(std::span<const uint8_t> data, int to, std::chrono::milliseconds timeout) override {
        if (data.empty()) return;
        run("send", [&] {
            auto buffer = context_->createUnboundBuffer(const_cast<uint8_t*>(data.data()), data.size());
            buffer->send(to, point_to_point_slot(sent_[static_cast<size_t>(to)]++));
            buffer->waitSend(timeout);
        });
    }

    void receive(std::span<uint8_t> data, int from, std::chrono::milliseconds timeout) override {
        if (data.empty()) return;
        run("receive", [&] {
            auto buffer = context_->createUnboundBuffer(data.data(), data.size());
            buffer->recv(from, point_to_point_slot(received_[static_cast<size_t>(from)]++));
            buffer->waitRecv(timeout);
        });
    }

    void broadcast(std::span<uint8_t> data, int root, std::chrono::milliseconds timeout) override {
        if (data.empty()) return;
        run("broadcast", [&] {
            gloo::BroadcastOptions options(context_);
            options.setOutput(data.data(), data.size());
            options.setRoot(root);
            options.setTimeout(timeout);
            options.setTag(next_tag());
            gloo::broadcast(options);
        });
    }

private:
    template <class F>
    void run(const char* what, F&& call) {
        try {
            call();
        } catch (const std::exception& e) {
            throw WorkerGroupError("worker " + std::to_string(rank()) + ": the " + what +
                                   " among the node's workers failed (a worker died or stalled): " + e.what());
        }
    }
    uint32_t next_tag() { return tag_++; }
    // The n-th message between two workers (one pair each way): both ends count alike, and the
    // collectives' slots have their own prefixes.
    static uint64_t point_to_point_slot(uint32_t n) { return gloo::Slot::build(0x50, n); }

    std::shared_ptr<gloo::transport::Device> device_;
    std::shared_ptr<gloo::rendezvous::Context> context_;
    uint32_t tag_ = 0;
    std::vector<uint32_t> sent_ = std::vector<uint32_t>(static_cast<size_t>(size()), 0);
    std::vector<uint32_t> received_ = std::vector<uint32_t>(static_cast<size_t>(size()), 0);
};

}  // namespace

std::unique_ptr<WorkerGroup> join_worker_group(const std::filesystem::path& rendezvous, int rank, int size,
                                               std::chrono::milliseconds timeout, bool on_gpus) {
    if (!on_gpus) return join_gloo_group(rendezvous, rank, size, timeout);
#if PANGEA_WITH_NCCL
    return join_nccl_group(rendezvous, rank, size, timeout);
#else
    throw WorkerGroupError("this build has no NCCL, which a node's workers on GPUs need: build on a machine with the "
                           "CUDA toolkit and NCCL (PANGEA_WITH_NCCL), or run one worker per node");
#endif
}

std::unique_ptr<WorkerGroup> join_gloo_group(const std::filesystem::path& rendezvous, int rank, int size,
                                             std::chrono::milliseconds timeout) {
    return std::make_unique<GlooGroup>(rendezvous, rank, size, timeout);
}

}  // namespace pangea
