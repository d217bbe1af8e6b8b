// A node's side of the coordinator (builtin, or elected through etcd): one TCP connection,
// heartbeats from a background thread, and a reconnect loop that re-registers with what this node holds, so that a
// coordinator restart costs the run nothing but a pause.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "common/socket.hpp"
#include "common/json.hpp"
#include "membership/membership.hpp"

namespace pangea {

struct CoordinatorClientOptions {
    std::string coordinator;  // host:port
    // Where the coordinator is now, asked before every connection attempt ("" while unknown);
    // with the etcd backend it moves when the node hosting it dies. Unset: `coordinator`.
    std::function<std::string()> locate;
    std::string run;          // run id (hex)
    int node = 0;
    std::string address;  // this node's transport address
    std::vector<std::string> ring_addresses;  // its workers', one per ring (Member::ring_addresses); empty: none
    std::chrono::milliseconds heartbeat{1000};
    // Beats to the coordinator at `heartbeat`. Off with etcd, where the node's lease is its
    // heartbeat; there the heartbeat thread instead checks where the coordinator is (locate),
    // and moves to a newly elected one even if the old one stalled without closing.
    bool send_beats = true;
    std::chrono::milliseconds reconnect_for{60000};  // give up when the coordinator stays away this long
    int rings = 1;      // [mesh] rings, which every node of the run must share
    std::string compression;  // [compress] and [mesh] aggregation, likewise (compression_of())
    bool join = false;  // a late joiner: recover from the members even if the run has not started
    int64_t resumed_step = -1;  // >= 0: this node holds the state after this many outer steps (a checkpoint)
    std::string secret;  // the run's shared secret (empty: none)
};

class CoordinatorClient : public Membership {
public:
    explicit CoordinatorClient(CoordinatorClientOptions options);
    ~CoordinatorClient() override;

    JoinResult join() override;
    std::variant<Epoch, Rejoin> ready(int64_t step, int64_t inner_steps) override;
    std::variant<EpochEnd, Rejoin> done(const Epoch& epoch, const std::string& error, std::string* why) override;
    void reserve(int64_t step) override;
    std::optional<Rejoin> admit(int64_t step) override;
    int joiners() const override { return joiners_; }
    void on_abort(std::function<void(uint64_t epoch)> handler) override;
    void on_wrap_up(std::function<void(int64_t step)> handler) override;
    void on_joiners_blocked(std::function<void()> handler) override { joiners_blocked_handler_ = std::move(handler); }
    void leave() override;

private:
    using Message = Json;
    void run_connection();   // the reader thread: connect, hello, receive, reconnect
    void run_heartbeats();
    Epoch epoch_of(const Message& message, int64_t step);  // and waits on the epoch's end
    std::string hello(const std::string& challenge) const;  // under mutex_
    bool send(const std::string& message);
    bool send_locked(const std::string& message);  // under mutex_
    // Drops "you are stale" news that came before a request for admission: the answer to that
    // request is what counts. Under mutex_.
    void forget_staleness();
    // Waits for a message whose op is one of `ops` (and that `accept` takes), or for news that
    // this node was dropped (a Rejoin); throws MeshError when the coordinator refused us or
    // stayed away.
    std::variant<Message, Rejoin> wait_for(std::initializer_list<const char*> ops, const std::function<bool(const Message&)>& accept);

    CoordinatorClientOptions options_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<Message> inbox_;
    std::string fatal_;  // why the connection is gone for good
    std::unique_ptr<LineSocket> socket_;
    std::function<void(uint64_t)> abort_handler_;
    std::function<void(int64_t)> wrap_up_handler_;
    std::function<void()> joiners_blocked_handler_;  // called (and set) on ready()'s thread only
    // What this node holds, told to every coordinator it (re)connects to.
    bool has_state_ = false;
    int64_t step_ = 0;
    uint64_t epoch_ = 0;
    std::string waiting_;  // "", "ready", "epoch" (all-reducing), "done" (reported)
    int64_t ready_inner_steps_ = kInnerStepsUnknown;  // what the last ready() said
    uint64_t pending_epoch_ = 0;
    bool pending_ok_ = false;
    int64_t reserved_ = 0;  // the step reserve() asked for
    std::atomic<int> joiners_ = 0;
    std::string nonce_;  // what the coordinator must prove it can sign
    std::string address_;  // of the coordinator last tried (reader thread)
    std::string connected_to_;  // the coordinator behind socket_ (under mutex_)
    const std::string incarnation_;  // this process, across reconnects
    std::atomic<bool> stop_ = false;
    std::thread reader_, heartbeats_;
};

}  // namespace pangea
