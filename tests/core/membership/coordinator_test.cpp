// The coordinator's decisions, driven message by message with a fake clock: epochs, commits,
// retries when a member is lost, joiners, stale nodes, and carrying on after a restart.
#include <gtest/gtest.h>

#include <thread>

#include "common/json.hpp"
#include "common/socket.hpp"
#include "membership/coordinator.hpp"

namespace pangea {
namespace {

using Clock = std::chrono::steady_clock;
using Sends = std::vector<CoordinatorState::Send>;

class Coordinator : public ::testing::Test {
protected:
    Clock::time_point now = Clock::time_point() + std::chrono::hours(1);
    std::optional<CoordinatorState> state;
    std::map<int, std::vector<Json>> inbox;  // connection -> messages
    std::set<int> closed;

    void start(int min_members = 1) {
        state.emplace(CoordinatorOptions{"00000000000000ab", std::chrono::milliseconds(3000), min_members}, now);
    }
    // [diloco] quorum and grace_ms.
    void start_with_quorum(int quorum, std::chrono::milliseconds grace) {
        CoordinatorOptions options{"00000000000000ab", std::chrono::milliseconds(3000), 1};
        options.quorum = quorum;
        options.grace = grace;
        state.emplace(options, now);
    }
    // A coordinator elected through a registry (etcd); `commits` collects the epochs it records.
    void start_with_registry(std::function<bool(const Epoch&)> record, int64_t step = 0, uint64_t epoch = 0) {
        CoordinatorOptions options{"00000000000000ab", std::chrono::milliseconds(3000), 1};
        options.registry = true;
        options.record_commit = std::move(record);
        options.committed_step = step;
        options.committed_epoch = epoch;
        state.emplace(options, now);
    }
    void registered(int node, bool present = true) { deliver(state->on_registered(node, present, now)); }
    void deliver(const Sends& sends) {
        for (const auto& s : sends) {
            if (!s.message.empty()) inbox[s.connection].push_back(parse_json(s.message));
            if (s.close) closed.insert(s.connection);
        }
    }
    void message(int connection, const Json& m) { deliver(state->on_message(connection, to_json(m), now)); }
    void tick(std::chrono::milliseconds advance = std::chrono::milliseconds(0)) {
        now += advance;
        deliver(state->on_tick(now));
    }
    // A node that has just started (connection = node + 1).
    void hello(int node, bool has_state = false, int64_t step = 0, int64_t epoch = 0, const char* waiting = "",
               int64_t pending = 0, bool ok = false, bool join = false, int connection = 0,
               const std::string& incarnation = "") {
        message(connection > 0 ? connection : node + 1,
                Json{{"op", "hello"},
                     {"protocol", 1},
                     {"run", "00000000000000ab"},
                     {"node", node},
                     {"address", "10.0.0." + std::to_string(node) + ":1"},
                     {"has_state", has_state},
                     {"step", step},
                     {"epoch", epoch},
                     {"waiting", waiting},
                     {"pending_epoch", pending},
                     {"ok", ok},
                     {"join", join},
                     {"incarnation", incarnation.empty() ? "process-" + std::to_string(node) : incarnation}});
    }
    void ready(int node, int64_t step) { message(node + 1, Json{{"op", "ready"}, {"step", step}}); }
    void ready(int node, int64_t step, int64_t inner_steps) {
        message(node + 1, Json{{"op", "ready"}, {"step", step}, {"inner_steps", inner_steps}});
    }
    // How many messages with `op` node got.
    size_t count(int node, const std::string& op) {
        size_t n = 0;
        for (const Json& m : inbox[node + 1]) n += json_string(m, "op").value_or("") == op;
        return n;
    }
    void done(int node, int64_t epoch, bool ok, const std::string& error = "") {
        Json m{{"op", "done"}, {"epoch", epoch}, {"ok", ok}};
        if (!error.empty()) m["error"] = error;
        message(node + 1, m);
    }
    // The last message node got, and whether there is one with that op.
    Json last(int node) {
        auto& messages = inbox[node + 1];
        return messages.empty() ? Json::object() : messages.back();
    }
    std::string last_op(int node) { return json_string(last(node), "op").value_or(""); }
    // A member list as the coordinator sends it: a JSON array (test nodes listen on 10.0.0.<id>:1).
    static Json members(std::initializer_list<int> nodes) {
        Json list = Json::array();
        for (int n : nodes) list.push_back({{"node", n}, {"address", "10.0.0." + std::to_string(n) + ":1"}});
        return list;
    }

    // Starts `n` fresh nodes and commits outer step 1 with all of them.
    void run_first_step(int n) {
        start();
        for (int i = 0; i < n; ++i) hello(i);
        tick(std::chrono::milliseconds(3001));
        for (int i = 0; i < n; ++i) ready(i, 1);
        for (int i = 0; i < n; ++i) done(i, 1, true);
        for (int i = 0; i < n; ++i) ASSERT_EQ(last_op(i), "commit");
    }
};

TEST_F(Coordinator, RegistrationsAreHeldForOneTimeoutThenWelcomed) {
    start();
    hello(0);
    EXPECT_TRUE(inbox[1].empty());
    tick(std::chrono::milliseconds(3001));
    EXPECT_EQ(last_op(0), "welcome");
    EXPECT_EQ(last(0)["role"], "member");
}

TEST_F(Coordinator, AnEpochNeedsEveryMemberReadyAndCommitsWhenAllSucceed) {
    start();
    hello(0), hello(1), hello(2);
    tick(std::chrono::milliseconds(3001));
    ready(0, 1), ready(1, 1);
    EXPECT_EQ(last_op(0), "welcome") << "no epoch while node 2 still trains";
    ready(2, 1);
    EXPECT_EQ(last_op(0), "epoch");
    EXPECT_EQ(last(0)["members"], members({0, 1, 2}));
    done(0, 1, true), done(1, 1, true);
    EXPECT_EQ(last_op(0), "epoch") << "no commit before every member reported";
    done(2, 1, true);
    EXPECT_EQ(last_op(0), "commit");
    EXPECT_EQ(last(2)["step"], 1);
    EXPECT_EQ(state->committed_step(), 1);
}

TEST_F(Coordinator, WithAQuorumTheOthersAreToldToWrapUpOnceTheGraceIsOver) {
    start_with_quorum(2, std::chrono::milliseconds(500));
    hello(0), hello(1), hello(2);
    tick(std::chrono::milliseconds(3001));
    ready(0, 1, 20);
    tick(std::chrono::milliseconds(1000));
    EXPECT_EQ(count(2, "wrap_up"), 0u) << "one ready member is not the quorum";
    ready(1, 1, 20);
    tick(std::chrono::milliseconds(499));
    EXPECT_EQ(count(2, "wrap_up"), 0u) << "the grace window is not over";
    tick(std::chrono::milliseconds(2));
    ASSERT_EQ(last_op(2), "wrap_up");
    EXPECT_EQ(last(2)["step"], 1);
    EXPECT_EQ(count(0, "wrap_up") + count(1, "wrap_up"), 0u) << "only those still training wrap up";
    tick(std::chrono::milliseconds(1000));
    EXPECT_EQ(count(2, "wrap_up"), 1u) << "told once";
    EXPECT_EQ(last_op(0), "welcome") << "the epoch still waits for the straggler's ready";
    // It trained 8 of its 20 inner steps: every member hears each member's count, once.
    ready(2, 1, 8);
    ASSERT_EQ(last_op(0), "epoch");
    EXPECT_EQ(last(0)["members"], members({0, 1, 2}));
    EXPECT_EQ(last(0)["inner_steps"], Json::array({20, 20, 8}));
    EXPECT_EQ(last(2)["inner_steps"], last(0)["inner_steps"]);
    done(0, 1, true), done(1, 1, true), done(2, 1, true);
    EXPECT_EQ(last_op(2), "commit");
    // The next step starts its own wait: nobody is told before its quorum is ready again.
    ready(0, 2, 20);
    tick(std::chrono::milliseconds(1000));
    EXPECT_EQ(count(2, "wrap_up"), 1u);
    ready(1, 2, 20);
    tick(std::chrono::milliseconds(501));
    EXPECT_EQ(count(2, "wrap_up"), 2u);
    EXPECT_EQ(last(2)["step"], 2);
}

TEST_F(Coordinator, WithoutAQuorumNobodyIsToldToWrapUp) {
    start();
    hello(0), hello(1), hello(2);
    tick(std::chrono::milliseconds(3001));
    ready(0, 1, 20), ready(1, 1, 20);
    tick(std::chrono::milliseconds(2500));  // (within the heartbeat timeout)
    EXPECT_EQ(count(2, "wrap_up"), 0u);
    ready(2, 1);  // a node that does not say what it trained (a Python node)
    ASSERT_EQ(last_op(0), "epoch");
    EXPECT_EQ(last(0)["inner_steps"], Json::array({20, 20, -1}));
}

// Everyone ready below mesh.min_members: the members hear "waiting" once, not at every tick
// of a quorum wait that is over.
TEST_F(Coordinator, AQuorumWaitEndsWhenEveryoneIsReady) {
    CoordinatorOptions options{"00000000000000ab", std::chrono::milliseconds(3000), 4};
    options.quorum = 2;
    options.grace = std::chrono::milliseconds(500);
    state.emplace(options, now);
    hello(0), hello(1), hello(2);
    tick(std::chrono::milliseconds(3001));
    ready(0, 1, 20), ready(1, 1, 20);
    tick(std::chrono::milliseconds(100));
    ready(2, 1, 20);
    EXPECT_EQ(last_op(0), "waiting");
    const size_t heard = count(0, "waiting");
    for (int i = 0; i < 10; ++i) tick(std::chrono::milliseconds(100));
    EXPECT_EQ(count(0, "waiting"), heard);
    EXPECT_EQ(count(2, "wrap_up"), 0u);
}

TEST(EpochWeights, EachMemberIsWeighedByItsInnerSteps) {
    Epoch epoch;
    epoch.members = {{0, "a:1", {}}, {1, "b:1", {}}, {2, "c:1", {}}, {3, "d:1", {}}};
    EXPECT_EQ(epoch.weight_of(2), 1.0f) << "nobody said";
    epoch.inner_steps = {{0, 20}, {1, 20}, {2, 20}, {3, 20}};
    EXPECT_EQ(epoch.weight_of(2), 1.0f) << "equal: exactly 1, so runs without stragglers are unchanged";
    epoch.inner_steps[3] = 10;  // sum 70
    EXPECT_FLOAT_EQ(epoch.weight_of(0), 4.0f * 20 / 70);
    EXPECT_FLOAT_EQ(epoch.weight_of(3), 4.0f * 10 / 70);
    float total = 0;
    for (const Member& m : epoch.members) total += epoch.weight_of(m.node);
    EXPECT_FLOAT_EQ(total, 4.0f) << "the weights average to 1";
    EXPECT_NE(epoch.describe().find("(inner steps 20, 20, 20, 10)"), std::string::npos) << epoch.describe();
    epoch.inner_steps.erase(1);
    EXPECT_EQ(epoch.weight_of(0), 1.0f) << "one member did not say: nobody is weighed";
}

TEST_F(Coordinator, AMemberLostMidEpochMakesTheSurvivorsRetryWithoutIt) {
    run_first_step(3);
    ready(0, 2), ready(1, 2), ready(2, 2);
    done(0, 2, true);  // node 0 finished before node 2 died: it must not apply alone
    deliver(state->on_closed(3, now));  // node 2's process ended
    EXPECT_EQ(last_op(0), "retry");
    EXPECT_EQ(last_op(1), "retry");
    ready(0, 2), ready(1, 2);
    EXPECT_EQ(last_op(0), "epoch");
    EXPECT_EQ(last(0)["members"], members({0, 1}));
    done(0, 3, true), done(1, 3, true);
    EXPECT_EQ(last_op(1), "commit");
    EXPECT_EQ(state->committed_step(), 2);
}

TEST_F(Coordinator, AFailedReportRetriesEveryoneAndTellsThemWhy) {
    run_first_step(2);
    ready(0, 2), ready(1, 2);
    done(1, 2, false, "compress/int8: encode failed with PANGEA_ERR_IO");
    EXPECT_EQ(last_op(0), "retry");
    EXPECT_EQ(last_op(1), "retry");
    // Node 0's own failure would only be the lost peer: the reason names the cause.
    EXPECT_EQ(last(0)["reason"], "node 1 reported a failed all-reduce: compress/int8: encode failed with PANGEA_ERR_IO");
    done(0, 2, true);  // late, for an epoch that is over: answered with a retry, never a commit
    EXPECT_EQ(last_op(0), "retry");
    EXPECT_EQ(state->committed_step(), 1);
}

TEST_F(Coordinator, ASilentNodeIsDroppedAfterTheTimeoutAndFoundStaleWhenItReturns) {
    run_first_step(3);
    ready(0, 2), ready(1, 2);
    tick(std::chrono::milliseconds(2000));
    message(1, Json{{"op", "beat"}});
    message(2, Json{{"op", "beat"}});
    tick(std::chrono::milliseconds(1500));  // node 2 has been silent 3.5 s
    EXPECT_TRUE(closed.count(3));
    EXPECT_EQ(last_op(0), "epoch");
    EXPECT_EQ(last(0)["members"], members({0, 1}));
    done(0, 2, true), done(1, 2, true);
    // SIGCONT: node 2 reconnects holding step 1, the run is at step 2.
    hello(2, true, 1, 1);
    EXPECT_EQ(last_op(2), "welcome");
    EXPECT_EQ(last(2)["role"], "recover");
    EXPECT_EQ(last(2)["members"], members({0, 1}));
}

TEST_F(Coordinator, AJoinerIsAdmittedAtTheNextStepOnly) {
    run_first_step(2);
    hello(4, false, 0, 0, "", 0, false, true);
    EXPECT_EQ(last(4)["role"], "recover");
    ready(0, 2), ready(1, 2);
    done(0, 2, true), done(1, 2, true);
    EXPECT_EQ(last(0)["joiners"], 1) << "members keep a snapshot while someone recovers";
    // The joiner fetched the state of step 1, but the run is at step 2 now.
    message(5, Json{{"op", "admit"}, {"step", 2}});
    EXPECT_EQ(last_op(4), "stale");
    EXPECT_EQ(last(4)["step"], 2);
    message(5, Json{{"op", "admit"}, {"step", 3}});
    EXPECT_EQ(last_op(4), "admitted");
    ready(0, 3), ready(1, 3);
    EXPECT_EQ(last_op(0), "commit") << "the epoch waits for the admitted joiner";
    ready(4, 3);
    EXPECT_EQ(last(4)["members"], members({0, 1, 4}));
}

// A joiner whose fetch takes longer than an outer step would never catch up if its request came
// during an epoch each time: the next epoch waits for it instead.
TEST_F(Coordinator, AJoinerTooLateForTheRunningEpochHoldsTheNextOne) {
    run_first_step(2);
    hello(4, false, 0, 0, "", 0, false, true);
    ready(0, 2), ready(1, 2);
    ASSERT_EQ(last_op(0), "epoch");
    // It learnt it fetches the state of step 1 while the epoch of step 2 runs.
    message(5, Json{{"op", "admit"}, {"step", 2}});
    EXPECT_EQ(last_op(4), "stale");
    done(0, 2, true), done(1, 2, true);
    EXPECT_EQ(last_op(0), "commit");
    EXPECT_EQ(last(0)["joiners"], 1) << "members publish the state it needs";
    ready(0, 3), ready(1, 3);
    EXPECT_EQ(last_op(0), "commit") << "no epoch while the joiner fetches the committed state";
    for (int i = 0; i < 6; ++i) {
        tick(std::chrono::milliseconds(2000));
        for (int c : {1, 2, 5}) message(c, Json{{"op", "beat"}});
    }
    EXPECT_EQ(last(0)["reason"], "outer step 3 waits for node(s) 4 (still training, or recovering the state)");
    message(5, Json{{"op", "admit"}, {"step", 3}});
    EXPECT_EQ(last_op(4), "admitted");
    ready(4, 3);
    EXPECT_EQ(last_op(0), "epoch");
    EXPECT_EQ(last(0)["members"], members({0, 1, 4}));
}

TEST_F(Coordinator, AJoinerHoldingTheRunIsDroppedWhenItFallsSilent) {
    run_first_step(2);
    hello(4, false, 0, 0, "", 0, false, true);
    ready(0, 2), ready(1, 2);
    message(5, Json{{"op", "admit"}, {"step", 2}});
    done(0, 2, true), done(1, 2, true);
    ready(0, 3), ready(1, 3);
    EXPECT_EQ(last_op(0), "commit");
    for (int i = 0; i < 2; ++i) {
        tick(std::chrono::milliseconds(2000));
        for (int c : {1, 2}) message(c, Json{{"op", "beat"}});
    }
    EXPECT_TRUE(closed.count(5)) << "node 4 was silent past the timeout";
    EXPECT_EQ(last_op(0), "epoch") << "the run goes on without it";
    EXPECT_EQ(last(0)["members"], members({0, 1}));
}

TEST_F(Coordinator, MembersHeldAtABoundaryHearWhomTheyWaitFor) {
    run_first_step(3);
    ready(0, 2), ready(1, 2);
    tick(std::chrono::milliseconds(1000));
    EXPECT_EQ(last_op(0), "commit");
    message(1, Json{{"op", "beat"}}), message(2, Json{{"op", "beat"}}), message(3, Json{{"op", "beat"}});
    tick(std::chrono::milliseconds(1500));
    message(1, Json{{"op", "beat"}}), message(2, Json{{"op", "beat"}}), message(3, Json{{"op", "beat"}});
    for (int i = 0; i < 4; ++i) {
        tick(std::chrono::milliseconds(2000));
        for (int c : {1, 2, 3}) message(c, Json{{"op", "beat"}});
    }
    EXPECT_EQ(last_op(0), "waiting");
    EXPECT_EQ(last(0)["reason"], "outer step 2 waits for node(s) 2 (still training, or recovering the state)");
    EXPECT_EQ(last_op(2), "commit") << "the slow node itself is not nagged";
}

TEST_F(Coordinator, BelowMinMembersTheRunWaitsForJoiners) {
    start(3);
    hello(0), hello(1);
    tick(std::chrono::milliseconds(3001));
    ready(0, 1), ready(1, 1);
    EXPECT_EQ(last_op(0), "waiting");
    hello(2);
    ready(2, 1);
    EXPECT_EQ(last_op(0), "epoch");
}

TEST_F(Coordinator, MembersBelowMinMembersHearThatAJoinerWaitsForTheirState) {
    // Node 1 died mid-run and comes back: it must recover the committed state, and node 0, alone
    // below min_members, holds it. No commit is coming to hand it over after.
    start(2);
    hello(0), hello(1);
    tick(std::chrono::milliseconds(3001));
    ready(0, 1), ready(1, 1);
    done(0, 1, true), done(1, 1, true);
    ready(0, 2);
    deliver(state->on_closed(2, now));  // node 1's process was killed
    EXPECT_EQ(last_op(0), "waiting");
    EXPECT_EQ(last(0)["joiners"], 0) << "nobody to hand the state to yet";
    hello(1, false, 0, 0, "", 0, false, true, 5, "process-1b");  // restarted with --join
    ASSERT_FALSE(inbox[5].empty());
    EXPECT_EQ(inbox[5].back()["role"], "recover");
    EXPECT_EQ(last_op(0), "waiting");
    EXPECT_EQ(last(0)["joiners"], 1);
}

TEST_F(Coordinator, ARestartedCoordinatorCarriesOnFromWhatTheNodesHold) {
    // The old coordinator committed epoch 7 (step 5) and told node 0 only, then died; node 1
    // still waits for the outcome and node 2 was training.
    start();
    hello(0, true, 5, 7, "ready");
    hello(1, true, 4, 6, "done", 7, true);
    hello(2, true, 5, 7);
    tick(std::chrono::milliseconds(3001));
    EXPECT_EQ(state->committed_step(), 5);
    EXPECT_EQ(inbox[2].front()["op"], "commit") << "node 1 learns the commit it missed";
    EXPECT_EQ(inbox[2].front()["epoch"], 7);
    for (int node : {0, 1, 2}) EXPECT_EQ(last(node)["role"], "member");
    ready(1, 6), ready(2, 6);
    EXPECT_EQ(last_op(0), "epoch");
    EXPECT_EQ(last(0)["epoch"], 8) << "epoch ids go on from the highest the nodes saw";
}

TEST_F(Coordinator, WhatANodeSaysBeforeItsWelcomeIsNotLost) {
    // A restarted coordinator holds hellos for one timeout; node 1 finishes its inner steps
    // meanwhile and reports ready before it is welcomed (the soak found this one: the run
    // waited for a ready that had been dropped).
    start();
    hello(0, true, 5, 7, "ready");
    hello(1, true, 5, 7);  // training when it reconnected
    ready(1, 6);
    tick(std::chrono::milliseconds(3001));
    EXPECT_EQ(last_op(0), "epoch") << "node 1's early ready counts";
    EXPECT_EQ(last(1)["step"], 6);
}

TEST_F(Coordinator, AnEpochLostWithTheOldCoordinatorIsRetried) {
    start();
    hello(0, true, 4, 6, "done", 7, true);
    hello(1, true, 4, 6, "epoch", 7);
    tick(std::chrono::milliseconds(3001));
    EXPECT_EQ(inbox[1].front()["op"], "retry");
    EXPECT_EQ(inbox[2].front()["op"], "retry");
    EXPECT_EQ(state->committed_step(), 4);
}

TEST_F(Coordinator, StrangersAndOtherRunsAreRefused) {
    start();
    message(9, Json{{"op", "hello"}, {"protocol", 1}, {"run", "ffff"}, {"node", 0}, {"address", "x:1"}});
    EXPECT_EQ(inbox[9].back()["op"], "refused");
    EXPECT_TRUE(closed.count(9));
    deliver(state->on_message(8, "GET / HTTP/1.1", now));
    EXPECT_TRUE(closed.count(8));
    message(7, Json{{"op", "ready"}, {"step", 1}});
    EXPECT_EQ(inbox[7].back()["op"], "refused");
}

TEST_F(Coordinator, ANodeOfAnotherNumberOfRingsIsRefusedSayingSo) {
    state.emplace(CoordinatorOptions{"00000000000000ab", std::chrono::milliseconds(3000), 1, "", 2}, now);
    message(9, Json{{"op", "hello"}, {"protocol", 1}, {"run", "00000000000000ab"}, {"node", 0}, {"address", "x:1"}, {"rings", 3}});
    EXPECT_EQ(inbox[9].back()["op"], "refused");
    EXPECT_EQ(inbox[9].back()["reason"],
              "it all-reduces over [mesh] rings = 3, the run over 2: every node of a run needs the same (the default, 0, is one per worker of the node: with nodes of different [node] workers, set it)");
    message(8, Json{{"op", "hello"}, {"protocol", 1}, {"run", "00000000000000ab"}, {"node", 0}, {"address", "x:1"}});
    EXPECT_EQ(inbox[8].back()["reason"],
              "it all-reduces over [mesh] rings = 1, the run over 2: every node of a run needs the same (the default, 0, is one per worker of the node: with nodes of different [node] workers, set it)")
        << "a hello without rings is of a node of one ring";

    // [mesh] rings = 0 (its default: one per worker of a node) for the coordinator: the first
    // node's number is the run's.
    state.emplace(CoordinatorOptions{"00000000000000ab", std::chrono::milliseconds(3000), 1, "", 0}, now);
    message(7, Json{{"op", "hello"}, {"protocol", 1}, {"run", "00000000000000ab"}, {"node", 0}, {"address", "x:1"}, {"rings", 0}});
    EXPECT_EQ(inbox[7].back()["reason"], "it claims [mesh] rings = 0");
    message(6, Json{{"op", "hello"}, {"protocol", 1}, {"run", "00000000000000ab"}, {"node", 0}, {"address", "x:1"}, {"rings", 4}});
    EXPECT_TRUE(inbox[6].empty()) << "held until the registrations are collected, not refused";
    message(5, Json{{"op", "hello"}, {"protocol", 1}, {"run", "00000000000000ab"}, {"node", 1}, {"address", "y:1"}, {"rings", 2}});
    EXPECT_EQ(inbox[5].back()["reason"],
              "it all-reduces over [mesh] rings = 2, the run over 4: every node of a run needs the same (the default, 0, is "
              "one per worker of the node: with nodes of different [node] workers, set it)");
}

TEST_F(Coordinator, ANodeThatCompressesOtherwiseIsRefusedSayingSo) {
    start();  // (no compression given: the first node's is the run's)
    const auto hello = [&](int connection, int node, const std::string& compression) {
        message(connection, Json{{"op", "hello"}, {"protocol", 1}, {"run", "00000000000000ab"}, {"node", node},
                                 {"address", "x:" + std::to_string(node)}, {"compression", compression}});
    };
    hello(9, 0, "compress/topk, gather aggregation");
    hello(8, 1, "compress/topk, ring aggregation");
    EXPECT_EQ(inbox[8].back()["op"], "refused");
    EXPECT_EQ(inbox[8].back()["reason"],
              "it compresses its contributions with compress/topk, ring aggregation, the run with compress/topk, gather "
              "aggregation: every node of a run needs the same [compress] plugin and [mesh] aggregation");
    hello(7, 2, "compress/topk, gather aggregation");
    EXPECT_TRUE(inbox[7].empty() || inbox[7].back()["op"] != "refused");
}

TEST_F(Coordinator, ANodeWhoseWorkersRunTheRingsIsReachedAtTheirAddressesInEveryEpoch) {
    state.emplace(CoordinatorOptions{"00000000000000ab", std::chrono::milliseconds(3000), 1, "", 2}, now);
    const Json workers = Json::array({"10.0.0.1:1", "10.0.0.1:2"});
    auto hello_with = [&](int node, const Json& ring_addresses) {
        Json hello{{"op", "hello"}, {"protocol", 1}, {"run", "00000000000000ab"}, {"node", node},
                   {"address", "10.0.0." + std::to_string(node) + ":1"}, {"rings", 2}};
        if (!ring_addresses.is_null()) hello["ring_addresses"] = ring_addresses;
        message(node + 1, hello);
    };
    hello_with(7, Json::array({"10.0.0.7:1"}));
    EXPECT_EQ(inbox[8].back()["op"], "refused");
    EXPECT_EQ(inbox[8].back()["reason"], "its ring_addresses [\"10.0.0.7:1\"] are not one \"host:port\" per ring (2)");
    hello_with(6, Json::array({"10.0.0.6:1", 5}));
    EXPECT_EQ(inbox[7].back()["op"], "refused") << "not a list of strings";

    hello_with(1, workers);
    hello_with(0, Json());  // one process: both rings at its address
    tick(std::chrono::milliseconds(3001));
    ready(0, 1), ready(1, 1);
    ASSERT_EQ(last_op(0), "epoch");
    const Json expected = Json::array({Json{{"node", 0}, {"address", "10.0.0.0:1"}},
                                       Json{{"node", 1}, {"address", "10.0.0.1:1"}, {"ring_addresses", workers}}});
    EXPECT_EQ(last(0)["members"], expected);
    const std::vector<Member> decoded = decode_members(last(0)["members"]);
    EXPECT_EQ(decoded[0].ring_address(1), "10.0.0.0:1");
    EXPECT_EQ(decoded[1].ring_address(0), "10.0.0.1:1");
    EXPECT_EQ(decoded[1].ring_address(1), "10.0.0.1:2");
    EXPECT_THROW(decode_members(Json::array({Json{{"node", 1}, {"address", "a:1"}, {"ring_addresses", "a:2"}}})), MeshError);
}

TEST_F(Coordinator, ASecondProcessWithALiveNodesIdIsRefusedButAReconnectIsNot) {
    run_first_step(2);
    hello(1, false, 0, 0, "", 0, false, false, /*connection=*/9, "another process");
    EXPECT_EQ(inbox[9].back()["op"], "refused");
    EXPECT_EQ(inbox[9].back()["reason"], "node id 1 is taken by a live node at 10.0.0.1:1");
    hello(1, true, 1, 1, "", 0, false, false, /*connection=*/10);  // the same process, reconnected
    EXPECT_EQ(inbox[10].back()["op"], "welcome");
    EXPECT_EQ(inbox[10].back()["role"], "member");
    EXPECT_TRUE(closed.count(2)) << "its old connection is closed";
}

TEST_F(Coordinator, WithASecretOnlyNodesThatProveItAreWelcomed) {
    state.emplace(CoordinatorOptions{"00000000000000ab", std::chrono::milliseconds(3000), 1, "s3cret"}, now);
    auto challenge = [&](int connection) {
        deliver(state->on_connected(connection));
        return inbox[connection].back()["nonce"].get<std::string>();
    };
    auto hello_with = [&](int connection, const std::string& proof) {
        message(connection, Json{{"op", "hello"},
                                 {"protocol", 1},
                                 {"run", "00000000000000ab"},
                                 {"node", 0},
                                 {"address", "10.0.0.1:1"},
                                 {"nonce", "abc"},
                                 {"proof", proof}});
    };
    const std::string stranger_nonce = challenge(5);
    hello_with(5, coordinator_proof("guess", stranger_nonce, "00000000000000ab", 0));
    EXPECT_EQ(inbox[5].back()["op"], "refused");
    EXPECT_EQ(inbox[5].back()["reason"], "authentication failed") << "a stranger learns nothing about the run";
    EXPECT_TRUE(closed.count(5));
    const std::string nonce = challenge(1);
    EXPECT_EQ(nonce.size(), 32u);
    EXPECT_NE(nonce, stranger_nonce);
    hello_with(1, coordinator_proof("s3cret", nonce, "00000000000000ab", 0));
    tick(std::chrono::milliseconds(3001));
    EXPECT_EQ(inbox[1].back()["op"], "welcome");
    EXPECT_EQ(inbox[1].back()["proof"], coordinator_reply_proof("s3cret", "abc")) << "the coordinator proves itself too";
    // Someone who recorded that hello replays it on a connection of its own: the proof was over
    // connection 1's challenge, so it does not prove anything on connection 7.
    challenge(7);
    hello_with(7, coordinator_proof("s3cret", nonce, "00000000000000ab", 0));
    EXPECT_EQ(inbox[7].back()["op"], "refused");
    EXPECT_TRUE(closed.count(7));
}

TEST_F(Coordinator, WithARegistryOnlyRegisteredNodesAreWelcomedAndAnExpiryDropsThem) {
    std::vector<Epoch> commits;
    start_with_registry([&](const Epoch& e) { return commits.push_back(e), true; });
    registered(0), registered(1);
    hello(0), hello(1), hello(2);
    tick(std::chrono::milliseconds(3001));
    EXPECT_EQ(last_op(0), "welcome");
    EXPECT_TRUE(inbox[3].empty()) << "node 2 is not registered in the store yet";
    registered(2);
    EXPECT_EQ(last_op(2), "welcome");
    tick(std::chrono::milliseconds(60000));
    EXPECT_FALSE(closed.count(1)) << "with a registry, silence here drops no one: the lease is the heartbeat";
    ready(0, 1), ready(1, 1), ready(2, 1);
    done(0, 1, true);
    registered(2, false);  // node 2's lease expired mid all-reduce
    EXPECT_TRUE(closed.count(3));
    EXPECT_EQ(last_op(0), "retry");
    ready(0, 1), ready(1, 1);
    done(0, 2, true), done(1, 2, true);
    EXPECT_EQ(last_op(0), "commit");
    ASSERT_EQ(commits.size(), 1u) << "the commit is recorded in the store before anyone hears of it";
    EXPECT_EQ(commits[0].id, 2u);
    EXPECT_EQ(commits[0].members.size(), 2u);
}

TEST_F(Coordinator, ASupersededCoordinatorCommitsNothingAndLetsGo) {
    start_with_registry([](const Epoch&) { return false; });  // another coordinator was elected
    registered(0), registered(1);
    hello(0), hello(1);
    tick(std::chrono::milliseconds(3001));
    ready(0, 1), ready(1, 1);
    done(0, 1, true), done(1, 1, true);
    EXPECT_EQ(last_op(0), "epoch") << "no commit without the record";
    EXPECT_TRUE(state->superseded());
    EXPECT_TRUE(closed.count(1) && closed.count(2)) << "the nodes are let go to find the new coordinator";
    EXPECT_EQ(state->committed_step(), 0);
}

TEST_F(Coordinator, AStoreThatCannotRecordTheCommitMakesTheEpochRetry) {
    bool reachable = false;
    start_with_registry([&](const Epoch&) -> bool {
        if (!reachable) throw MeshError("etcd at http://x: connection refused");
        return true;
    });
    registered(0);
    hello(0);
    tick(std::chrono::milliseconds(3001));
    ready(0, 1);
    done(0, 1, true);
    EXPECT_EQ(last_op(0), "retry");
    EXPECT_NE(last(0)["reason"].get<std::string>().find("could not be recorded"), std::string::npos) << last(0)["reason"];
    reachable = true;
    ready(0, 1);
    done(0, 2, true);
    EXPECT_EQ(last_op(0), "commit");
}

TEST_F(Coordinator, ANewlyElectedCoordinatorCarriesOnFromTheStoresRecord) {
    start_with_registry([](const Epoch&) { return true; }, /*step=*/4, /*epoch=*/7);
    registered(0), registered(1);
    hello(0, true, 4, 7, "ready");
    hello(1, true, 3, 6, "done", 7, true);  // reported in epoch 7, which committed, but never heard
    tick(std::chrono::milliseconds(3001));
    EXPECT_EQ(last_op(1), "welcome");
    EXPECT_EQ(inbox[2][0]["op"], "commit") << "the commit it missed";
    ready(1, 5);
    EXPECT_EQ(last_op(0), "epoch");
    EXPECT_EQ(last(0)["epoch"], 8);
    EXPECT_EQ(last(0)["step"], 5);
}

TEST_F(Coordinator, AStoreRecordOfAnEarlierRunIsIgnoredWhenEveryNodeStartsAfresh) {
    start_with_registry([](const Epoch&) { return true; }, /*step=*/9, /*epoch=*/12);
    registered(0);
    hello(0);
    tick(std::chrono::milliseconds(3001));
    EXPECT_EQ(last(0)["role"], "member");
    EXPECT_EQ(state->committed_step(), 0);
}

// Every node SIGKILLed while a checkpoint was being written, the store's record at step 18, the
// run's newest complete checkpoint at 16: `--resume latest` everywhere carries the run on at 16.
TEST_F(Coordinator, ARunAheadOfEveryStateHeldGoesBackToTheNewestOne) {
    start_with_registry([](const Epoch&) { return true; }, /*step=*/18, /*epoch=*/20);
    registered(0), registered(1), registered(2);
    hello(0, true, 16), hello(1, true, 16), hello(2, true, 14);
    tick(std::chrono::milliseconds(3001));
    EXPECT_EQ(state->committed_step(), 16);
    EXPECT_EQ(last(0)["role"], "member");
    EXPECT_EQ(last(1)["role"], "member");
    EXPECT_EQ(last(2)["role"], "recover") << "behind the newest state held";
    EXPECT_EQ(last(2)["members"], members({0, 1}));
    ready(0, 17), ready(1, 17);
    EXPECT_EQ(last_op(0), "epoch");
    EXPECT_EQ(last(0)["step"], 17);
    EXPECT_GT(last(0)["epoch"].get<int64_t>(), 20) << "epoch ids never repeat";
}

TEST_F(Coordinator, WhenEveryNodeIsGoneTheNodesThatComeBackAreHeardTogether) {
    run_first_step(2);
    ready(0, 2), ready(1, 2);
    done(0, 2, true), done(1, 2, true);
    ASSERT_EQ(state->committed_step(), 2);
    deliver(state->on_closed(1, now));
    deliver(state->on_closed(2, now));
    // Back from the checkpoint of step 1 (new processes, new connections).
    hello(0, true, 1, 0, "", 0, false, false, 10, "again-0");
    EXPECT_TRUE(inbox[10].empty()) << "held until the window closes";
    hello(1, true, 1, 0, "", 0, false, false, 11, "again-1");
    tick(std::chrono::milliseconds(3001));
    EXPECT_EQ(state->committed_step(), 1);
    ASSERT_FALSE(inbox[10].empty());
    EXPECT_EQ(inbox[10].back()["role"], "member");
    EXPECT_EQ(inbox[11].back()["role"], "member");
}

// The server's limits on strangers, over real sockets: a connection that says nothing is closed,
// and beyond max_connections new ones are closed at once (nothing is allocated for them).
TEST(CoordinatorServerLimits, SilentAndSurplusConnectionsAreClosed) {
    CoordinatorServer server("127.0.0.1:0");
    CoordinatorOptions options{"00000000000000ab", std::chrono::milliseconds(3000), 1};
    options.max_connections = 2;
    options.first_message_within = std::chrono::milliseconds(500);
    std::atomic<bool> stop{false};
    std::thread serving([&] { server.serve(options, stop); });
    auto open = [&] { return std::make_unique<LineSocket>(connect_tcp(server.address(), std::chrono::seconds(5))); };
    std::string message;

    auto silent = open();
    ASSERT_EQ(silent->receive(&message, 5000), LineSocket::Received::kMessage);  // the challenge
    EXPECT_NE(message.find("challenge"), std::string::npos) << message;
    auto second = open();
    ASSERT_EQ(second->receive(&message, 5000), LineSocket::Received::kMessage);
    // A third while two are open: closed without a challenge.
    auto surplus = open();
    EXPECT_EQ(surplus->receive(&message, 5000), LineSocket::Received::kClosed);
    // Both said nothing: closed after 500 ms, well before the 5 s the test waits.
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(silent->receive(&message, 5000), LineSocket::Received::kClosed);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
    EXPECT_EQ(second->receive(&message, 5000), LineSocket::Received::kClosed);
    // With room again, a newcomer is challenged.
    auto later = open();
    EXPECT_EQ(later->receive(&message, 5000), LineSocket::Received::kMessage);
    stop = true;
    serving.join();
}

TEST(CoordinatorProtocol, MemberListsAreJsonArraysThatCarryAnyAddress) {
    // Addresses once had to be free of ';' and '=' (the list was "0=host:port;2=host:port").
    const std::vector<Member> members{{0, "10.0.0.1:7000"}, {2, "[::1]:7000"}, {5, "odd;name=x\"\\\n:1"}};
    const Json list = encode_members(members);
    ASSERT_TRUE(list.is_array());
    EXPECT_EQ(list[1], (Json{{"node", 2}, {"address", "[::1]:7000"}}));
    const std::vector<Member> back = decode_members(parse_json(to_json(list)));
    ASSERT_EQ(back.size(), members.size());
    for (size_t i = 0; i < members.size(); ++i) {
        EXPECT_EQ(back[i].node, members[i].node);
        EXPECT_EQ(back[i].address, members[i].address);
    }
    EXPECT_TRUE(decode_members(Json::array()).empty());
    for (const char* bad : {R"("0=a:1;1=b:2")", R"([{"node":"0","address":"a:1"}])", R"([{"node":-1,"address":"a:1"}])",
                            R"([{"node":1}])", R"([1,2])", "null"})
        EXPECT_THROW(decode_members(parse_json(bad)), MeshError) << bad;
}

TEST_F(Coordinator, AnAddressWithASemicolonIsWelcomedAndListedAsItIs) {
    start();
    message(1, Json{{"op", "hello"}, {"protocol", 1}, {"run", "00000000000000ab"}, {"node", 0}, {"address", "a;b=c:1"}});
    tick(std::chrono::milliseconds(3001));
    EXPECT_EQ(last_op(0), "welcome");
    ready(0, 1);
    EXPECT_EQ(last_op(0), "epoch");
    EXPECT_EQ(last(0)["members"], (Json::array({{{"node", 0}, {"address", "a;b=c:1"}}})));
}

TEST_F(Coordinator, AMessageThatIsNotJsonClosesTheConnection) {
    start();
    for (const char* bad : {"{\"op\":\"hello\"", "{\"op\":1}", "[\"op\",\"hello\"]", "\"\\u00e9\"", "{\"op\":\"\xff\"}"}) {
        closed.clear();
        deliver(state->on_message(3, bad, now));
        EXPECT_TRUE(closed.count(3)) << bad;
    }
}

}  // namespace
}  // namespace pangea
