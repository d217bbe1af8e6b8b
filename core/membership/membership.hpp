// Who takes part in each outer step. At every outer-step boundary the live members agree on an
// epoch (id, step, members in ring order); they all-reduce within it and report the outcome;
// the epoch commits only if every member succeeded, otherwise all of them retry the same step in
// a new epoch without the dead. So no two nodes ever apply different updates.
//
// Backends: the builtin coordinator (membership/coordinator.hpp, a process `pangea launch` starts) and
// etcd. A backend heartbeats in the background and drops a node that stops (timeout), whose
// process ends (its connection closes) or that leaves.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "topology/ring_setup.hpp"

namespace pangea {

struct Member {
    int node = 0;
    std::string address;  // where its transport listens
    // Where each of the run's rings reaches it, when its workers run them ([node] workers:
    // train/node_workers.hpp); empty: every ring at `address`.
    std::vector<std::string> ring_addresses;

    const std::string& ring_address(size_t ring) const {
        return ring < ring_addresses.size() ? ring_addresses[ring] : address;
    }
    bool operator==(const Member&) const = default;
};

// A node that is not a member (it joins a run in progress, or was dropped: it stalled past the
// timeout, or the run moved on while it was away) holds an old state or none: it takes up the
// current one from a peer (live recovery) before taking part again. This says where the run is.
struct Rejoin {
    std::string why;
    int64_t run_step = 0;         // outer steps the run has committed
    std::vector<Member> sources;  // members to recover from
};

// ready()'s inner_steps when the node does not say (a Python node): its epoch weighs nobody.
constexpr int64_t kInnerStepsUnknown = -1;

struct Epoch {
    uint64_t id = 0;
    int64_t step = 0;              // the outer step being synced (1 for the first)
    std::vector<Member> members;  // in ring order
    // node -> the inner steps it trained for this step, as each said in ready(): fewer than the
    // others' when it was told to wrap up ([diloco] quorum). Missing: it did not say.
    std::map<int, int64_t> inner_steps;

    int position_of(int node) const;  // -1 when not a member
    std::string describe() const;     // "epoch 3 (step 7): nodes 0, 1, 3"
    // What `node`'s pseudo-gradient is multiplied by so that the members' average weighs each by
    // its inner steps: n x k_node / sum(k). Exactly 1 when every member trained as many, or one
    // did not say.
    float weight_of(int node) const;
};

enum class Role {
    kMember,   // starts with the run, or (after a coordinator restart) is still a member
    kRecover,  // a run is in progress without it: fetch the state from `sources` first
};

struct JoinResult {
    Role role = Role::kMember;
    int64_t step = 0;             // outer steps committed in the run so far
    std::vector<Member> sources;  // with kRecover: the members, to fetch the state from
};

// How an epoch ended, from done().
enum class EpochEnd {
    kCommitted,  // every member succeeded: the step is done
    kRetried,    // the step is tried again in a new epoch
};

class Membership {
public:
    virtual ~Membership() = default;

    // A membership change is a value: the calls below that wait on the members return a Rejoin
    // when they find this node dropped. They throw MeshError only when the backend cannot be
    // reached or refuses the node: the run cannot go on.

    // Registers this node (its transport address). A node dropped meanwhile joins as kRecover.
    virtual JoinResult join() = 0;

    // Blocks until the members agree on the epoch for outer step `step`, for which this node
    // trained `inner_steps` inner steps (kInnerStepsUnknown: it does not say).
    virtual std::variant<Epoch, Rejoin> ready(int64_t step, int64_t inner_steps) = 0;

    // Reports this node's all-reduce in `epoch`: `error` is empty when it succeeded, else why it
    // failed (passed on to the other members, whose own failure is usually only the lost peer).
    // When the step is retried, `*why` says why.
    virtual std::variant<EpochEnd, Rejoin> done(const Epoch& epoch, const std::string& error, std::string* why) = 0;

    // Live recovery of the state after outer step `step - 1` has begun: asks to take part in
    // outer step `step`. Granted, the members wait for this node at the end of that step, so
    // that the run cannot move on while the state is on the wire (however long that takes).
    // Returns at once; admit() collects the answer.
    virtual void reserve(int64_t step) = 0;
    // After the recovery: waits until this node takes part in outer step `step` (asking, if
    // reserve() did not). Empty once admitted; a Rejoin when the run has moved on (fetch again).
    virtual std::optional<Rejoin> admit(int64_t step) = 0;

    // Nodes waiting to recover at the last commit: members keep a state snapshot for them.
    virtual int joiners() const = 0;
    // Called on the thread in ready(), while it waits, when nodes wait to recover the committed
    // state and no epoch can start before they take part (fewer members than mesh.min_members):
    // no commit is coming to hand them a snapshot after, so the handler hands it now. It must
    // not call back into the membership.
    virtual void on_joiners_blocked(std::function<void()> handler) = 0;

    // Called from a background thread when the running epoch is given up (a member was dropped):
    // the caller aborts its collective so that it fails fast instead of waiting on the dead.
    virtual void on_abort(std::function<void(uint64_t epoch)> handler) = 0;

    // Called from a background thread when the run asks this node to end its inner steps of
    // outer step `step` early: enough members are ready for it ([diloco] quorum) and the grace
    // window has passed. The node finishes the inner step it is in, then calls ready() with the
    // steps it trained. Must not block or call back into the membership.
    virtual void on_wrap_up(std::function<void(int64_t step)> handler) = 0;

    // Leaves at once (the others drop this node without waiting for the timeout).
    virtual void leave() = 0;
};

}  // namespace pangea
