// The builtin membership store: `pangea coordinator`, a small TCP server that the nodes of a run
// connect to. One JSON object per line each way (docs/operations.md lists the messages).
//
// It keeps nothing the nodes cannot rebuild: on start it waits one timeout for nodes to
// (re-)register; each says what it holds (committed outer steps, last epoch, what it is waiting
// for), and the coordinator carries on from there. So a coordinator that is killed and
// restarted does not end the run.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/json.hpp"
#include "common/socket.hpp"
#include "membership/membership.hpp"

namespace pangea {

struct CoordinatorOptions {
    std::string run;                            // run id (hex); nodes of another run are refused
    std::chrono::milliseconds timeout{3000};    // silence after which a node is dropped
    int min_members = 1;                        // fewest members an outer step may have
    std::string secret;                         // empty: nodes are not asked to prove anything
    // [mesh] rings: a node of another number is refused; 0: the first node's number is the run's
    int rings = 1;
    // How nodes compress their contributions (compression_of() in collective/ring_allreduce.hpp):
    // a node that says otherwise is refused; "": the first node's is the run's.
    std::string compression;
    // Limits on what strangers can hold: open connections (beyond it new ones are closed at
    // once), and how long a new connection may stay silent before its first message.
    size_t max_connections = 1024;
    std::chrono::milliseconds first_message_within{10000};

    // [diloco] quorum and grace_ms: once `quorum` members are ready for an outer step (0: off,
    // the step waits for every member) and `grace` has passed since, the members still training
    // are told to wrap up ("wrap_up"): each ends the inner step it is in and reports ready with
    // the inner steps it trained, which the epoch carries (Epoch::inner_steps).
    int quorum = 0;
    std::chrono::milliseconds grace{0};

    // With a registry (etcd), a node takes part only while it is registered there: its lease is
    // its heartbeat, so it is dropped when its registration goes (on_registered), not on
    // silence here.
    bool registry = false;
    // Writes an epoch's commit to the store before any member hears of it. Returns false when
    // this coordinator has been superseded (it then stops: superseded()); throws MeshError when
    // the store cannot be reached (the epoch is retried).
    std::function<bool(const Epoch&)> record_commit;
    // The last commit the store holds: where a newly elected coordinator carries on from.
    int64_t committed_step = 0;
    uint64_t committed_epoch = 0;
};

// A member list on the wire: [{"node": 0, "address": "host:port"}, ...], with "ring_addresses":
// ["host:port", ...] for a node whose workers run the rings.
Json encode_members(const std::vector<Member>& members);

// The longest failure text a node's "done" carries (the coordinator passes it on to the others
// in "retry"); longer ones are cut.
constexpr size_t kMaxErrorText = 1000;

// What a node proves in its hello (over the coordinator's challenge), and what the coordinator
// proves back in its welcome (over the node's nonce), both HMAC-SHA256 with the run's secret.
std::string coordinator_proof(const std::string& secret, const std::string& nonce, const std::string& run, int64_t node);
std::string coordinator_reply_proof(const std::string& secret, const std::string& node_nonce);
std::vector<Member> decode_members(const Json& list);  // throws MeshError when it is not such a list

// The coordinator's decisions, without sockets or clocks (time is passed in), so that tests can
// drive every path. Connections are numbered by the caller.
class CoordinatorState {
public:
    using Time = std::chrono::steady_clock::time_point;
    struct Send {
        int connection;
        std::string message;
        bool close = false;  // close the connection after sending
    };

    CoordinatorState(CoordinatorOptions options, Time now);

    std::vector<Send> on_connected(int connection);  // the challenge the node must answer
    std::vector<Send> on_message(int connection, const std::string& message, Time now);
    std::vector<Send> on_closed(int connection, Time now);
    std::vector<Send> on_tick(Time now);  // call every ~100 ms: timeouts, the end of the grace
    // With a registry: `node` registered (present) or its registration went (lease expired,
    // revoked on leaving).
    std::vector<Send> on_registered(int node, bool present, Time now);

    bool superseded() const { return superseded_; }  // another coordinator took over: stop serving
    int64_t committed_step() const { return committed_step_; }
    std::string describe() const;  // one line for the log

private:
    enum class Status { kMember, kJoiner };
    struct Node {
        int connection = -1;
        std::string address;
        std::vector<std::string> ring_addresses;  // its workers' (Member::ring_addresses)
        std::string incarnation;  // per process: tells a reconnect from a second process with this id
        Status status = Status::kMember;
        Time last_seen;
        int64_t ready_step = 0;  // waiting for the epoch of this step (0: not waiting)
        int64_t inner_steps = kInnerStepsUnknown;  // it trained for that step, as its ready says
        // A joiner that asked to take part while an epoch ran: no new epoch starts until it
        // has fetched the state that epoch commits and asked again (or is dropped).
        bool catching_up = false;
    };
    struct Hello {  // held while the coordinator is still collecting registrations
        int connection;
        Json fields;
    };
    struct ActiveEpoch {
        Epoch epoch;
        std::map<int, std::string> reported;  // node -> its error ("" when it succeeded)
    };

    void handle(int connection, const std::string& message);  // one message; sends go to out_
    void replay_early(int connection);  // what a held connection sent before its welcome
    void admit_hello(int connection, const Json& hello, Time now);
    void welcome(int connection, const Json& hello, Time now);
    void drop(int node, const std::string& why);
    void maybe_decide();
    // Some members are still training for `step`, `ready` are not: with a quorum of them ready
    // and the grace window over, those training are told to wrap up.
    void wrap_up(int64_t step, size_t ready, const std::vector<int>& training);
    void maybe_resolve();
    void resolve(bool commit, std::string why);
    void send(int node, const std::string& message);
    void stale(int node);
    int node_of(int connection) const;
    int joiner_count() const;

    CoordinatorOptions options_;
    Time grace_end_;
    bool collecting_ = true;  // until a timeout after both the start and the first hello: hellos are held
    std::vector<Hello> held_;
    std::map<int, std::vector<std::string>> early_;  // messages of held hellos' connections, in order
    std::set<int> registered_;           // with a registry: the nodes registered there
    std::vector<Hello> unregistered_;    // hellos of nodes not (yet) registered there
    bool superseded_ = false;
    std::map<int, std::string> challenges_;  // connection -> nonce it was sent
    std::map<int, Node> nodes_;
    int64_t committed_step_ = 0;
    uint64_t committed_epoch_ = 0;
    uint64_t next_epoch_ = 1;
    bool started_ = false;  // an epoch was decided (in this or an earlier coordinator)
    std::optional<ActiveEpoch> active_;
    struct QuorumWait {
        int64_t step = 0;
        Time since;          // the quorum was ready
        std::set<int> told;  // nodes told to wrap up
    };
    std::optional<QuorumWait> quorum_wait_;  // [diloco] quorum reached, the epoch not yet decided
    Time now_;             // of the event being handled
    Time last_wait_note_;  // the last epoch decided, or the last time waiting members were told whom they wait for
    std::vector<Send> out_;
};

// The coordinator's TCP server: bound at construction (address() known at once), then serving
// until `stop` turns true or the coordinator is superseded. `pangea coordinator` runs one; with
// the etcd backend, the elected node runs one in a thread and feeds it the registry's changes
// through `registry` (polled every ~100 ms: the changes since the last call).
class CoordinatorServer {
public:
    using RegistryChanges = std::function<std::vector<std::pair<int, bool>>()>;  // (node, present)
    explicit CoordinatorServer(const std::string& listen_address);  // throws SocketError
    ~CoordinatorServer();
    const std::string& address() const;
    void serve(const CoordinatorOptions& options, const std::atomic<bool>& stop, const RegistryChanges& registry = {});

private:
    TcpListener listener_;
};

// A coordinator served from a thread of this process until destroyed: rank 0 of a torchrun job
// serves its run's (train/mesh_session.cpp). Throws SocketError when it cannot listen.
class HostedCoordinator {
public:
    HostedCoordinator(const std::string& listen_address, CoordinatorOptions options);
    ~HostedCoordinator();
    HostedCoordinator(const HostedCoordinator&) = delete;
    HostedCoordinator& operator=(const HostedCoordinator&) = delete;
    const std::string& address() const { return server_.address(); }

private:
    CoordinatorServer server_;
    std::atomic<bool> stop_ = false;
    std::thread thread_;
};

// Serves until SIGINT/SIGTERM. Writes the bound address to `address_file` if given (for
// `pangea launch`, which asks for port 0). Returns the exit code.
int run_coordinator(const std::string& listen_address, const CoordinatorOptions& options,
                    const std::string& address_file);

}  // namespace pangea
