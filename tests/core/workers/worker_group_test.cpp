// The workers' collectives over real Gloo pairs on loopback: W workers (threads here, processes in
// a node) meet in a directory, sum and broadcast; one that never comes, or leaves mid-run, makes
// the others fail within the timeout, naming the group, instead of hanging.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <span>
#include <string>
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

// What a sharded learner does: parts of uneven sizes, one of them empty.
TEST_F(WorkerGroups, GatherAndReduceScatterWorkOnUnevenPartsAndSendsArriveInOrder) {
    constexpr int kWorkers = 3;
    const std::vector<size_t> counts{5000, 0, 7001};
    const size_t total = 12001;
    std::vector<std::vector<float>> gathered(kWorkers), reduced(kWorkers);
    std::vector<std::vector<uint8_t>> received(kWorkers);
    run_workers(kWorkers, [&](std::unique_ptr<WorkerGroup> group, int rank) {
        std::vector<float> data(total, -1.0f);
        const size_t begin = rank == 2 ? 5000 : 0;
        for (size_t i = begin; i < begin + counts[static_cast<size_t>(rank)]; ++i) data[i] = float(i) + 0.5f;
        group->all_gather(data, counts);
        gathered[rank] = data;
        for (size_t i = 0; i < total; ++i) data[i] = float(rank + 1) * float(i % 11);
        group->reduce_scatter_sum(data, counts);
        reduced[rank].assign(data.begin() + long(begin), data.begin() + long(begin + counts[static_cast<size_t>(rank)]));
        // Two messages from worker 0 to each other, received in the order sent.
        if (rank == 0) {
            for (int to = 1; to < kWorkers; ++to)
                for (uint8_t n = 1; n <= 2; ++n) group->send(std::vector<uint8_t>(100, uint8_t(to * 10 + n)), to);
        } else {
            for (int n = 0; n < 2; ++n) {
                std::vector<uint8_t> bytes(100);
                group->receive(bytes, 0);
                received[rank].push_back(bytes[99]);
            }
        }
    });
    for (int rank = 0; rank < kWorkers; ++rank) {
        for (size_t i = 0; i < total; ++i) ASSERT_EQ(gathered[rank][i], float(i) + 0.5f) << "worker " << rank << " value " << i;
        const size_t begin = rank == 2 ? 5000 : 0;
        ASSERT_EQ(reduced[rank].size(), counts[static_cast<size_t>(rank)]);
        for (size_t i = 0; i < reduced[rank].size(); ++i)
            ASSERT_EQ(reduced[rank][i], 6.0f * float((begin + i) % 11)) << "worker " << rank << " value " << begin + i;
    }
    EXPECT_EQ(received[1], (std::vector<uint8_t>{11, 12}));
    EXPECT_EQ(received[2], (std::vector<uint8_t>{21, 22}));
}

// A send completes only once the receiver takes it: a send given a longer timeout than the
// group's waits for a receiver that comes late (a leader still running its own rings), one with
// the group's fails past it.
TEST_F(WorkerGroups, ASendWaitsForTheReceiverAsLongAsItsTimeoutSays) {
    std::vector<std::thread> threads;
    std::string late_error;
    uint32_t received = 0;
    for (int rank = 0; rank < 2; ++rank)
        threads.emplace_back([&, rank] {
            const auto group = join_gloo_group(dir, rank, 2, milliseconds(1000));
            uint32_t value = 7;
            std::span<uint8_t> bytes(reinterpret_cast<uint8_t*>(&value), sizeof value);
            if (rank == 1) {
                group->send(bytes, 0, milliseconds(20000));
                return;
            }
            std::this_thread::sleep_for(milliseconds(2500));  // past the group's timeout
            value = 0;
            group->receive(bytes, 1, milliseconds(20000));
            received = value;
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(received, 7u);

    fs::remove_all(dir);
    fs::create_directories(dir);
    threads.clear();
    for (int rank = 0; rank < 2; ++rank)
        threads.emplace_back([&, rank] {
            const auto group = join_gloo_group(dir, rank, 2, milliseconds(1000));
            uint32_t value = 7;
            std::span<uint8_t> bytes(reinterpret_cast<uint8_t*>(&value), sizeof value);
            if (rank == 1) {
                try {
                    group->send(bytes, 0);  // the group's timeout
                } catch (const WorkerGroupError& e) {
                    late_error = e.what();
                }
                return;
            }
            std::this_thread::sleep_for(milliseconds(2500));
        });
    for (auto& t : threads) t.join();
    EXPECT_NE(late_error.find("the send among the node's workers failed"), std::string::npos) << late_error;
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
