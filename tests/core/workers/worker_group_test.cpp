// The workers' collectives over real Gloo pairs on loopback: W workers (threads here, processes in
// a node) meet in a directory, sum and broadcast; one that never comes, or leaves mid-run, makes
// the others fail within the timeout, naming the group, instead of hanging.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <thread>

#include "workers/worker_group.hpp"

namespace pangea {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class WorkerGroups : public ::testing::Test {
protected:
    void SetUp() override {
        dir = fs::temp_directory_path() / ("pangea-worker-group-" + std::to_string(std::random_device()()));
        fs::create_directories(dir);
    }
    void TearDown() override { fs::remove_all(dir); }

    // Runs `body` as each of `size` workers, one thread each.
    template <class F>
    void run_workers(int size, F body) {
        std::vector<std::thread> threads;
        for (int rank = 0; rank < size; ++rank)
            threads.emplace_back([&, rank] { body(join_gloo_group(dir, rank, size, milliseconds(20000)), rank); });
        for (auto& t : threads) t.join();
    }
    fs::path dir;
};

TEST_F(WorkerGroups, TheSumIsTheSameBitsOnEveryWorkerAndBroadcastCopiesTheRoots) {
    constexpr int kWorkers = 3;
    constexpr size_t kCount = 100003;  // odd: uneven pieces
    std::vector<std::vector<float>> sums(kWorkers);
    std::vector<std::vector<uint8_t>> copies(kWorkers);
    run_workers(kWorkers, [&](std::unique_ptr<WorkerGroup> group, int rank) {
        EXPECT_EQ(group->rank(), rank);
        EXPECT_EQ(group->size(), kWorkers);
        std::vector<float> data(kCount);
        for (size_t i = 0; i < kCount; ++i) data[i] = 0.1f * float(rank + 1) + float(i % 7) * 1e-3f;
        group->all_reduce_sum(data);
        sums[rank] = data;
        std::vector<uint8_t> bytes(1000, static_cast<uint8_t>(rank));
        group->broadcast(bytes, 1);
        copies[rank] = bytes;
    });
    for (int rank = 0; rank < kWorkers; ++rank) {
        EXPECT_EQ(sums[rank], sums[0]) << "worker " << rank;
        EXPECT_EQ(copies[rank], std::vector<uint8_t>(1000, 1)) << "worker " << rank;
    }
    EXPECT_NEAR(sums[0][5], 0.1f + 0.2f + 0.3f + 3 * 5e-3f, 1e-5);
}

TEST_F(WorkerGroups, AWorkerThatNeverComesIsAnErrorWithinTheTimeout) {
    const auto start = std::chrono::steady_clock::now();
    try {
        join_gloo_group(dir, 0, 2, milliseconds(1500));
        FAIL() << "a group of 2 formed with one worker";
    } catch (const WorkerGroupError& e) {
        EXPECT_NE(std::string(e.what()).find("did not all meet in"), std::string::npos) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST_F(WorkerGroups, AWorkerGoneMidRunFailsTheOthersCallsInsteadOfHangingThem) {
    std::string error;
    run_workers(2, [&](std::unique_ptr<WorkerGroup> group, int rank) {
        std::vector<float> data(1000, 1.0f);
        group->all_reduce_sum(data);
        if (rank == 1) return;  // leaves: its pairs close
        std::this_thread::sleep_for(milliseconds(200));
        try {
            group->all_reduce_sum(data);
        } catch (const WorkerGroupError& e) {
            error = e.what();
        }
    });
    EXPECT_NE(error.find("the all-reduce among the node's workers failed"), std::string::npos) << error;
}

}  // namespace
}  // namespace pangea
