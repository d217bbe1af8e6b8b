// WorkerGroup over NCCL, for a node's workers on GPUs (worker k on GPU k): the gradient sums run
// on the devices, the hand-overs (host bytes) over a Gloo group beside it, which also carries
// NCCL's unique id from worker 0 to the others. Everything else (who sums what, when, the
// hand-overs, a dead worker taking its node out) is the Gloo path's, the same callers.
//
// Built where the CUDA toolkit and NCCL are found (PANGEA_WITH_NCCL). NCCL needs a GPU per
// worker: no machine of this project's CI has two, so this file is compiled there but runs only
// on a machine with several GPUs.
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <string>
#include <thread>

#include "workers/worker_group.hpp"

namespace pangea {
namespace {

using std::chrono::milliseconds;

std::string cuda_text(cudaError_t error) { return std::string(cudaGetErrorName(error)) + ": " + cudaGetErrorString(error); }

class NcclGroup final : public WorkerGroup {
public:
    NcclGroup(std::unique_ptr<WorkerGroup> host, int device, milliseconds timeout)
        : WorkerGroup(host->rank(), host->size(), timeout), host_(std::move(host)), device_(device), collective_timeout_(timeout) {
        int devices = 0;
        if (const cudaError_t error = cudaGetDeviceCount(&devices); error != cudaSuccess)
            throw WorkerGroupError(where() + "cannot count the GPUs (" + cuda_text(error) + ")");
        if (device_ >= devices)
            throw WorkerGroupError(where() + "needs GPU " + std::to_string(device_) + ", and this machine has " +
                                   std::to_string(devices) + ": set [node] workers to at most the GPUs");
        if (const cudaError_t error = cudaSetDevice(device_); error != cudaSuccess)
            throw WorkerGroupError(where() + "cannot use GPU " + std::to_string(device_) + " (" + cuda_text(error) + ")");
        ncclUniqueId id{};
        if (rank() == 0) check("ncclGetUniqueId", ncclGetUniqueId(&id));
        host_->broadcast({reinterpret_cast<uint8_t*>(&id), sizeof id}, 0);
        // Non-blocking: the set-up and every collective can be waited on with a deadline (a
        // worker that died makes the others' NCCL calls wait for good otherwise).
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        config.blocking = 0;
        check("ncclCommInitRankConfig", ncclCommInitRankConfig(&comm_, size(), id, rank(), &config));
        wait("ncclCommInitRankConfig");
    }

    ~NcclGroup() override {
        if (!comm_) return;
        if (failed_) ncclCommAbort(comm_);
        else ncclCommDestroy(comm_);
    }

    // `data` is on this worker's GPU.
    void all_reduce_sum(std::span<float> data) override {
        if (data.empty()) return;
        check("ncclAllReduce", ncclAllReduce(data.data(), data.data(), data.size(), ncclFloat, ncclSum, comm_,
                                             /*stream: the default one, where LibTorch's work is queued*/ nullptr));
        wait("ncclAllReduce");
    }

    // Parts of uneven sizes: one broadcast (gather) or reduce (scatter) per part, rooted at its
    // worker, in one NCCL group.
    void all_gather(std::span<float> data, std::span<const size_t> counts) override {
        per_part("ncclBroadcast", data, counts, [&](float* part, size_t count, int root) {
            return ncclBroadcast(part, part, count, ncclFloat, root, comm_, nullptr);
        });
    }
    void reduce_scatter_sum(std::span<float> data, std::span<const size_t> counts) override {
        per_part("ncclReduce", data, counts, [&](float* part, size_t count, int root) {
            return ncclReduce(part, part, count, ncclFloat, ncclSum, root, comm_, nullptr);
        });
    }

    // Host bytes: over Gloo.
    void broadcast(std::span<uint8_t> data, int root, milliseconds timeout) override { host_->broadcast(data, root, timeout); }
    void send(std::span<const uint8_t> data, int to, milliseconds timeout) override { host_->send(data, to, timeout); }
    void receive(std::span<uint8_t> data, int from, milliseconds timeout) override { host_->receive(data, from, timeout); }

private:
    std::string where() const { return "worker " + std::to_string(rank()) + " of " + std::to_string(size()) + ": "; }

    template <class Call>
    void per_part(const char* name, std::span<float> data, std::span<const size_t> counts, Call call) {
        if (data.empty()) return;
        check("ncclGroupStart", ncclGroupStart());
        size_t offset = 0;
        for (int k = 0; k < size(); ++k) {
            const size_t count = counts[static_cast<size_t>(k)];
            if (count > 0) check(name, call(data.data() + offset, count, k));
            offset += count;
        }
        check("ncclGroupEnd", ncclGroupEnd());
        wait(name);
    }

    void check(const char* call, ncclResult_t result) {
        if (result == ncclSuccess || result == ncclInProgress) return;
        fail(std::string(call) + " failed: " + ncclGetErrorString(result) + " (" + ncclGetLastError(comm_) + ")");  // (comm_ may be null: the last error of any)
    }

    // Until the communicator's work is done (the stream too, for a collective), it fails, or
    // the timeout passes: then the communicator is aborted, which ends the others' waits too.
    void wait(const char* call) {
        const auto deadline = std::chrono::steady_clock::now() + collective_timeout_;
        while (true) {
            ncclResult_t state = ncclSuccess;
            check("ncclCommGetAsyncError", ncclCommGetAsyncError(comm_, &state));
            if (state != ncclSuccess && state != ncclInProgress)
                fail(std::string(call) + " failed: " + ncclGetErrorString(state) + " (a worker died, or its GPU failed)");
            if (state == ncclSuccess) {
                const cudaError_t stream = cudaStreamQuery(nullptr);
                if (stream == cudaSuccess) return;
                if (stream != cudaErrorNotReady) fail(std::string(call) + ": the GPU failed (" + cuda_text(stream) + ")");
            }
            if (std::chrono::steady_clock::now() > deadline)
                fail(std::string(call) + " did not end within " + std::to_string(collective_timeout_.count()) +
                     " ms (a worker stalled or died)");
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
    }

    [[noreturn]] void fail(const std::string& what) {
        failed_ = true;
        throw WorkerGroupError(where() + what);
    }

    std::unique_ptr<WorkerGroup> host_;
    int device_;
    milliseconds collective_timeout_;
    ncclComm_t comm_ = nullptr;
    bool failed_ = false;
};

}  // namespace

std::unique_ptr<WorkerGroup> join_nccl_group(const std::filesystem::path& rendezvous, int rank, int size,
                                             milliseconds timeout) {
    return std::make_unique<NcclGroup>(join_gloo_group(rendezvous, rank, size, timeout), rank, timeout);
}

}  // namespace pangea
