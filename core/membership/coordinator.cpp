#include "membership/coordinator.hpp"

#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <limits>

#include "common/files.hpp"
#include "common/json.hpp"
#include "common/log.hpp"
#include "common/socket.hpp"
#include "topology/auth.hpp"

namespace pangea {
namespace {

constexpr int kProtocol = 1;
constexpr int64_t kMaxStep = int64_t{1} << 62;  // step arithmetic (+ 1) stays far from overflow

void note(pangea_log_level level, const std::string& message) { log(level, "coordinator", message); }

// Fields of a node's message (untrusted: a missing or mistyped field reads as 0, "" or false).
int64_t integer(const Json& message, const char* key) { return json_int(message, key).value_or(0); }
std::string text(const Json& message, const char* key) { return json_string(message, key).value_or(""); }
bool flag(const Json& message, const char* key) { return json_bool(message, key).value_or(false); }

// A node's "ring_addresses": non-empty "host:port" strings, at most 64 (as [mesh] rings); nullopt
// when it is something else.
std::optional<std::vector<std::string>> ring_addresses_of(const Json& message) {
    const auto found = message.find("ring_addresses");
    if (found == message.end() || !found->is_array() || found->size() > 64) return std::nullopt;
    std::vector<std::string> out;
    for (const Json& item : *found) {
        if (!item.is_string() || item.get<std::string>().empty() || item.get<std::string>().size() > 256) return std::nullopt;
        out.push_back(item.get<std::string>());
    }
    return out;
}

// The inner steps a node says it trained in its "ready" (or its hello while it waits on one);
// kInnerStepsUnknown when it does not say.
int64_t inner_steps_of(const Json& message) {
    const int64_t k = json_int(message, "inner_steps").value_or(kInnerStepsUnknown);
    return k >= 0 && k <= kMaxStep ? k : kInnerStepsUnknown;
}

// A field as it was sent, for a refusal's reason.
std::string shown(const Json& message, const char* key) {
    return message.contains(key) ? to_json(message[key]).substr(0, 80) : "none";
}

}  // namespace

Json encode_members(const std::vector<Member>& members) {
    Json list = Json::array();
    for (const Member& m : members) {
        Json item{{"node", m.node}, {"address", m.address}};
        if (!m.ring_addresses.empty()) item["ring_addresses"] = m.ring_addresses;
        list.push_back(std::move(item));
    }
    return list;
}

std::vector<Member> decode_members(const Json& list) {
    if (!list.is_array())
        throw MeshError("bad member list from the membership store: not an array: " + to_json(list).substr(0, 200));
    std::vector<Member> out;
    for (const Json& item : list) {
        const auto node = json_int(item, "node");
        const auto address = json_string(item, "address");
        if (!node || *node < 0 || *node > std::numeric_limits<int>::max() || !address)
            throw MeshError("bad member list from the membership store: " + to_json(item).substr(0, 200) +
                            " is not {\"node\": id, \"address\": \"host:port\"}");
        Member member{static_cast<int>(*node), *address, {}};
        if (item.contains("ring_addresses")) {
            const auto rings = ring_addresses_of(item);
            if (!rings)
                throw MeshError("bad member list from the membership store: " + to_json(item).substr(0, 200) +
                                ": ring_addresses is not a list of \"host:port\"");
            member.ring_addresses = *rings;
        }
        out.push_back(std::move(member));
    }
    return out;
}

int Epoch::position_of(int node) const {
    for (size_t i = 0; i < members.size(); ++i)
        if (members[i].node == node) return static_cast<int>(i);
    return -1;
}

std::string Epoch::describe() const {
    std::string nodes, steps;
    bool unequal = false;
    for (const Member& m : members) {
        nodes += (nodes.empty() ? "" : ", ") + std::to_string(m.node);
        const auto k = inner_steps.find(m.node);
        steps += (steps.empty() ? "" : ", ") + (k == inner_steps.end() ? std::string("?") : std::to_string(k->second));
        unequal |= k != inner_steps.end() && k->second != inner_steps.begin()->second;
    }
    return "epoch " + std::to_string(id) + " (step " + std::to_string(step) + "): nodes " + nodes +
           (unequal ? " (inner steps " + steps + ")" : "");
}

float Epoch::weight_of(int node) const {
    const auto own = inner_steps.find(node);
    if (own == inner_steps.end()) return 1.0f;
    int64_t total = 0;
    bool equal = true;
    for (const Member& m : members) {
        const auto k = inner_steps.find(m.node);
        if (k == inner_steps.end()) return 1.0f;
        total += k->second;
        equal &= k->second == own->second;
    }
    if (equal || total <= 0) return 1.0f;
    return static_cast<float>(static_cast<double>(members.size()) * static_cast<double>(own->second) /
                              static_cast<double>(total));
}

CoordinatorState::CoordinatorState(CoordinatorOptions options, Time now)
    : options_(std::move(options)),
      grace_end_(now + options_.timeout),
      committed_step_(options_.committed_step),
      committed_epoch_(options_.committed_epoch),
      next_epoch_(options_.committed_epoch + 1),
      started_(options_.committed_epoch > 0),
      now_(now),
      last_wait_note_(now) {}

int CoordinatorState::node_of(int connection) const {
    for (const auto& [id, node] : nodes_)
        if (node.connection == connection) return id;
    return -1;
}

int CoordinatorState::joiner_count() const {
    return static_cast<int>(std::count_if(nodes_.begin(), nodes_.end(),
                                          [](const auto& n) { return n.second.status == Status::kJoiner; }));
}

std::string CoordinatorState::describe() const {
    std::string members, joiners;
    for (const auto& [id, node] : nodes_) {
        std::string& list = node.status == Status::kMember ? members : joiners;
        list += (list.empty() ? "" : ", ") + std::to_string(id);
    }
    return "step " + std::to_string(committed_step_) + "; members [" + members + "]" +
           (joiners.empty() ? "" : "; recovering [" + joiners + "]") +
           (active_ ? "; running " + active_->epoch.describe() : "");
}

void CoordinatorState::send(int node, const std::string& message) {
    const auto found = nodes_.find(node);
    if (found != nodes_.end()) out_.push_back({found->second.connection, message});
}


void CoordinatorState::stale(int node) {
    Node& n = nodes_.at(node);
    n.status = Status::kJoiner;
    n.ready_step = 0;
    std::vector<Member> sources;
    for (const auto& [id, other] : nodes_)
        if (other.status == Status::kMember) sources.push_back({id, other.address});
    send(node, to_json(Json{{"op", "stale"},
                            {"step", committed_step_},
                            {"members", encode_members(sources)}}));
}

void CoordinatorState::welcome(int connection, const Json& hello, Time now) {
    const int id = static_cast<int>(integer(hello, "node"));
    if (const auto old = nodes_.find(id); old != nodes_.end() && old->second.connection != connection) {
        // (With a registry, etcd keeps ids unique: a new process registers only once the old one's lease is gone.)
        if (!options_.registry && old->second.incarnation != text(hello, "incarnation") &&
            now - old->second.last_seen < options_.timeout) {
            // Another live process holds this id (two nodes started with the same --node-id).
            const std::string reason =
                "node id " + std::to_string(id) + " is taken by a live node at " + old->second.address;
            note(PANGEA_LOG_WARN,
                 "refused a second node " + std::to_string(id) + " at " + text(hello, "address") + ": " + reason);
            out_.push_back({connection, to_json(Json{{"op", "refused"}, {"reason", reason}}), true});
            challenges_.erase(connection);
            return;
        }
        // The node reconnected (its old connection is dead or about to be): keep one.
        out_.push_back({old->second.connection, "", true});
        challenges_.erase(old->second.connection);
        if (active_ && active_->epoch.position_of(id) >= 0 && !active_->reported.count(id))
            resolve(false, "node " + std::to_string(id) + " reconnected during the all-reduce");
        nodes_.erase(old);
    }
    Node& node = nodes_[id];
    node.connection = connection;
    node.address = text(hello, "address");
    node.ring_addresses = ring_addresses_of(hello).value_or(std::vector<std::string>{});
    node.incarnation = text(hello, "incarnation");
    node.last_seen = now;
    const bool has_state = flag(hello, "has_state");
    const int64_t step = integer(hello, "step");
    const std::string waiting = text(hello, "waiting");
    const uint64_t pending = static_cast<uint64_t>(integer(hello, "pending_epoch"));
    bool member = has_state ? step == committed_step_ : !started_ && !flag(hello, "join");
    if (has_state && step + 1 == committed_step_ && waiting == "done" && pending == committed_epoch_ &&
        flag(hello, "ok")) {
        // It reported success in the epoch that committed, but the commit never reached it.
        out_.push_back({connection, to_json(Json{{"op", "commit"},
                                                 {"epoch", committed_epoch_},
                                                 {"step", committed_step_},
                                                 {"joiners", joiner_count()}})});
        member = true;
    } else if (member && (waiting == "epoch" || waiting == "done") && !(active_ && active_->epoch.id == pending)) {
        // Its epoch was lost (with a previous coordinator) and nobody committed it: retry.
        out_.push_back(
            {connection, to_json(Json{{"op", "retry"}, {"epoch", pending}, {"reason", "coordinator restarted"}})});
    }
    if (has_state && step > committed_step_) {
        out_.push_back({connection,
                        to_json(Json{{"op", "refused"},
                                     {"reason", "it holds outer step " + std::to_string(step) +
                                                    " but the run committed only " + std::to_string(committed_step_)}}),
                        true});
        nodes_.erase(id);
        return;
    }
    node.status = member ? Status::kMember : Status::kJoiner;
    std::vector<Member> sources;
    for (const auto& [other_id, other] : nodes_)
        if (other_id != id && other.status == Status::kMember) sources.push_back({other_id, other.address});
    out_.push_back({connection, to_json(Json{{"op", "welcome"},
                                             {"role", member ? "member" : "recover"},
                                             {"step", committed_step_},
                                             {"members", encode_members(sources)},
                                             {"proof", options_.secret.empty()
                                                           ? std::string()
                                                           : coordinator_reply_proof(options_.secret, text(hello, "nonce"))}})});
    note(PANGEA_LOG_INFO, "node " + std::to_string(id) + " at " + node.address +
                              (member ? " is a member" : " must recover its state from a peer") + "; " + describe());
    if (member && waiting == "ready") node.ready_step = committed_step_ + 1, node.inner_steps = inner_steps_of(hello);
    maybe_decide();
    replay_early(connection);
}

void CoordinatorState::drop(int id, const std::string& why) {
    const auto found = nodes_.find(id);
    if (found == nodes_.end()) return;
    out_.push_back({found->second.connection, "", true});
    challenges_.erase(found->second.connection);
    nodes_.erase(found);
    note(why == "it left" ? PANGEA_LOG_INFO : PANGEA_LOG_WARN, "dropped node " + std::to_string(id) + ": " + why);
    if (nodes_.empty() && started_ && !collecting_) {
        // Nobody is left to carry the run on: the nodes that come back are heard together, as
        // by a coordinator that just started, and the run carries on from what they hold.
        collecting_ = true;
        grace_end_ = now_;
        note(PANGEA_LOG_WARN, "every node is gone; the run waits for nodes to come back at step " +
                                  std::to_string(committed_step_) + " or from checkpoints");
    }
    if (active_ && active_->epoch.position_of(id) >= 0 && !active_->reported.count(id)) {
        resolve(false, "node " + std::to_string(id) + " dropped: " + why);
        return;
    }
    maybe_resolve();
    maybe_decide();
}

void CoordinatorState::maybe_decide() {
    if (collecting_ || active_) return;
    const int64_t step = committed_step_ + 1;
    std::vector<Member> members;
    std::vector<int> training;
    for (const auto& [id, node] : nodes_) {
        if (node.catching_up) return;  // a joiner is fetching the last committed state
        if (node.status != Status::kMember) continue;
        if (node.ready_step != step) training.push_back(id);  // a member is still training
        else members.push_back({id, node.address, node.ring_addresses});
    }
    if (!training.empty()) return wrap_up(step, members.size(), training);
    quorum_wait_.reset();  // (everyone is ready)
    if (members.empty()) return;
    if (static_cast<int>(members.size()) < options_.min_members) {
        for (const Member& m : members)
            send(m.node, to_json(Json{{"op", "waiting"},
                                      {"reason", std::to_string(members.size()) + " members, fewer than mesh.min_members = " +
                                                     std::to_string(options_.min_members) + "; waiting for nodes to join"},
                                      {"joiners", joiner_count()}}));
        return;
    }
    ActiveEpoch active;
    active.epoch.id = next_epoch_++;
    active.epoch.step = step;
    active.epoch.members = members;
    Json inner_steps = Json::array();
    for (const Member& m : members) {
        const int64_t k = nodes_.at(m.node).inner_steps;
        inner_steps.push_back(k);
        if (k >= 0) active.epoch.inner_steps[m.node] = k;
    }
    started_ = true;
    const std::string message = to_json(Json{{"op", "epoch"},
                                             {"epoch", active.epoch.id},
                                             {"step", step},
                                             {"members", encode_members(members)},
                                             {"inner_steps", inner_steps}});
    for (const Member& m : members) {
        nodes_.at(m.node).ready_step = 0;
        send(m.node, message);
    }
    note(PANGEA_LOG_INFO, active.epoch.describe());
    active_ = std::move(active);
    last_wait_note_ = now_;
}

void CoordinatorState::wrap_up(int64_t step, size_t ready, const std::vector<int>& training) {
    if (options_.quorum <= 0 || static_cast<int>(ready) < options_.quorum) return;
    if (!quorum_wait_ || quorum_wait_->step != step) {
        quorum_wait_ = QuorumWait{step, now_, {}};
        note(PANGEA_LOG_DEBUG, std::to_string(ready) + " members are ready for step " + std::to_string(step) +
                                   " (the quorum); the others wrap up in " + std::to_string(options_.grace.count()) +
                                   " ms");
    }
    if (now_ - quorum_wait_->since < options_.grace) return;  // (on_tick asks again)
    std::string told;
    for (int id : training)
        if (quorum_wait_->told.insert(id).second) {
            send(id, to_json(Json{{"op", "wrap_up"}, {"step", step}}));
            told += (told.empty() ? "" : ", ") + std::to_string(id);
        }
    if (!told.empty())
        note(PANGEA_LOG_INFO, "step " + std::to_string(step) + ": " + std::to_string(ready) +
                                  " members are ready (quorum " + std::to_string(options_.quorum) +
                                  ") and the grace window is over: node(s) " + told + " wrap up their inner steps");
}

void CoordinatorState::maybe_resolve() {
    if (!active_) return;
    for (const auto& [node, error] : active_->reported)
        if (!error.empty()) return resolve(false, "node " + std::to_string(node) + " reported a failed all-reduce: " + error);
    for (const Member& m : active_->epoch.members)
        if (nodes_.count(m.node) && !active_->reported.count(m.node)) return;  // still running
    resolve(true, "");
}

void CoordinatorState::resolve(bool commit, std::string why) {
    const Epoch epoch = active_->epoch;
    active_.reset();
    if (commit && options_.record_commit) {
        try {
            if (!options_.record_commit(epoch)) {
                // Another coordinator was elected meanwhile: the nodes move to it.
                note(PANGEA_LOG_WARN, "superseded by another coordinator; " + epoch.describe() + " is left to it");
                superseded_ = true;
                for (const auto& [id, node] : nodes_) out_.push_back({node.connection, "", true});
                nodes_.clear();
                return;
            }
        } catch (const MeshError& e) {
            commit = false;
            why = std::string("its commit could not be recorded: ") + e.what();
        }
    }
    if (commit) {
        committed_step_ = epoch.step;
        committed_epoch_ = epoch.id;
        const std::string message = to_json(Json{{"op", "commit"},
                                                 {"epoch", epoch.id},
                                                 {"step", epoch.step},
                                                 {"joiners", joiner_count()}});
        for (const Member& m : epoch.members) send(m.node, message);
        // Members that were not in the epoch (they came back too late) are now behind.
        for (auto& [id, node] : nodes_)
            if (node.status == Status::kMember && epoch.position_of(id) < 0) stale(id);
    } else {
        note(PANGEA_LOG_WARN, epoch.describe() + " is retried: " + why);
        const std::string message = to_json(Json{{"op", "retry"}, {"epoch", epoch.id}, {"reason", why}});
        for (const Member& m : epoch.members) send(m.node, message);
    }
    maybe_decide();
}

std::vector<CoordinatorState::Send> CoordinatorState::on_connected(int connection) {
    const std::string nonce = random_nonce();
    challenges_[connection] = nonce;
    return {{connection, to_json(Json{{"op", "challenge"}, {"nonce", nonce}})}};
}

std::string coordinator_proof(const std::string& secret, const std::string& nonce, const std::string& run, int64_t node) {
    return hmac_sha256_hex(secret, "pangea-coordinator|" + nonce + "|" + run + "|" + std::to_string(node));
}

std::string coordinator_reply_proof(const std::string& secret, const std::string& node_nonce) {
    return hmac_sha256_hex(secret, "pangea-coordinator-reply|" + node_nonce);
}

std::vector<CoordinatorState::Send> CoordinatorState::on_message(int connection, const std::string& message, Time now) {
    out_.clear();
    now_ = now;
    handle(connection, message);
    return std::move(out_);
}

void CoordinatorState::replay_early(int connection) {
    const auto found = early_.find(connection);
    if (found == early_.end()) return;
    const std::vector<std::string> messages = std::move(found->second);
    early_.erase(found);
    if (node_of(connection) < 0) return;  // refused after all
    for (const std::string& message : messages) handle(connection, message);
}

void CoordinatorState::handle(int connection, const std::string& message) {
    const Time now = now_;
    Json fields;
    std::string error = "no \"op\"";
    try {
        fields = parse_json(message);
    } catch (const JsonError& e) {
        error = e.what();
    }
    const std::string op = text(fields, "op");
    const int id = node_of(connection);
    if (op.empty()) {
        note(PANGEA_LOG_WARN, "closed a connection that sent a message that is not ours (" + error + "): " + message.substr(0, 80));
        if (id >= 0) drop(id, "it sent a malformed message");
        out_.push_back({connection, "", true});
        return;
    }
    if (op == "hello") {
        std::string refusal;
        const auto challenge = challenges_.find(connection);
        if (!options_.secret.empty() &&
            (challenge == challenges_.end() ||
             !same_digest(text(fields, "proof"), coordinator_proof(options_.secret, challenge->second, text(fields, "run"),
                                                                    integer(fields, "node"))))) {
            // Nothing about the run goes back: not its id, not why.
            note(PANGEA_LOG_WARN, "refused a connection claiming to be node " + shown(fields, "node") +
                                      ": authentication failed (it does not hold the run's secret)");
            out_.push_back({connection, to_json(Json{{"op", "refused"}, {"reason", "authentication failed"}}), true});
            return;
        }
        const int64_t rings = json_int(fields, "rings").value_or(1);  // (a hello without it: one ring)
        if (integer(fields, "protocol") != kProtocol)
            refusal = "protocol " + shown(fields, "protocol") + " is not " + std::to_string(kProtocol);
        else if (text(fields, "run") != options_.run)
            refusal = "it belongs to run " + text(fields, "run") + ", this coordinator serves run " + options_.run;
        else if (integer(fields, "node") < 0 || integer(fields, "node") > std::numeric_limits<int>::max() ||
                 text(fields, "address").empty())
            refusal = "the hello names no node id or address";
        else if (integer(fields, "step") < 0 || integer(fields, "step") > kMaxStep)
            refusal = "it claims outer step " + shown(fields, "step");
        else if (rings < 1 || rings > 64)
            refusal = "it claims [mesh] rings = " + shown(fields, "rings");
        else if (options_.rings > 0 && rings != options_.rings)
            refusal = "it all-reduces over [mesh] rings = " + std::to_string(rings) + ", the run over " +
                      std::to_string(options_.rings) +
                      ": every node of a run needs the same (the default, 0, is one per worker of the node: with "
                      "nodes of different [node] workers, set it)";
        else if (!text(fields, "compression").empty() && !options_.compression.empty() &&
                 text(fields, "compression") != options_.compression)
            refusal = "it compresses its contributions with " + text(fields, "compression") + ", the run with " +
                      options_.compression + ": every node of a run needs the same [compress] plugin and [mesh] "
                      "aggregation";
        else if (fields.contains("ring_addresses") &&
                 (!ring_addresses_of(fields) || ring_addresses_of(fields)->size() != static_cast<size_t>(rings)))
            refusal = "its ring_addresses " + shown(fields, "ring_addresses") + " are not one \"host:port\" per ring (" +
                      std::to_string(rings) + ")";
        if (refusal.empty() && options_.compression.empty() && !text(fields, "compression").empty()) {
            options_.compression = text(fields, "compression");  // the run's is its first node's
            note(PANGEA_LOG_INFO, "the run's contributions travel as " + options_.compression + ", as node " +
                                      shown(fields, "node") + "'s do");
        }
        if (refusal.empty() && options_.rings == 0) {  // the run's rings are its first node's
            options_.rings = static_cast<int>(rings);
            note(PANGEA_LOG_INFO, "the run all-reduces over " + std::to_string(rings) + " ring(s), as node " +
                                      shown(fields, "node") + " does");
        }
        if (!refusal.empty()) {
            note(PANGEA_LOG_WARN, "refused a node: " + refusal);
            out_.push_back({connection, to_json(Json{{"op", "refused"}, {"reason", refusal}}), true});
        } else if (collecting_) {
            // The window counts from the first node that arrives: a coordinator started before
            // its nodes (slow to start, a Python import, a restart) still hears them all.
            if (held_.empty()) grace_end_ = std::max(grace_end_, now + options_.timeout);
            held_.push_back({connection, fields});
        } else {
            admit_hello(connection, fields, now);
        }
        return;
    }
    const auto same = [&](const Hello& h) { return h.connection == connection; };
    const bool held = std::any_of(held_.begin(), held_.end(), same) ||
                      std::any_of(unregistered_.begin(), unregistered_.end(), same);
    if (id < 0 && held) {  // kept until it is welcomed (a node may report ready before that)
        auto& early = early_[connection];
        if (op != "beat" && early.size() < 64) early.push_back(message);
        return;
    }
    if (id < 0) {  // not registered (or dropped): only a hello is welcome
        out_.push_back({connection, to_json(Json{{"op", "refused"}, {"reason", "say hello first"}}), true});
        return;
    }
    Node& node = nodes_.at(id);
    node.last_seen = now;
    if (op == "beat") {
    } else if (op == "leave") {
        drop(id, "it left");
    } else if (op == "ready") {
        const int64_t step = integer(fields, "step");
        if (node.status != Status::kMember || step != committed_step_ + 1) {
            stale(id);
        } else {
            node.ready_step = step;
            node.inner_steps = inner_steps_of(fields);
            maybe_decide();
        }
    } else if (op == "done") {
        const uint64_t epoch = static_cast<uint64_t>(integer(fields, "epoch"));
        if (node.status != Status::kMember) {
            stale(id);
        } else if (active_ && active_->epoch.id == epoch && active_->epoch.position_of(id) >= 0) {
            // (An older node sends no error text.)
            const std::string error = text(fields, "error").substr(0, kMaxErrorText);
            active_->reported[id] = flag(fields, "ok") ? "" : error.empty() ? "(no reason given)" : error;
            maybe_resolve();
        } else if (epoch != committed_epoch_) {
            // An epoch that was retried (the retry may already be on its way; the node ignores a
            // second one) or that a previous coordinator ran.
            send(id, to_json(Json{{"op", "retry"}, {"epoch", epoch}, {"reason", "the epoch is over"}}));
        }
    } else if (op == "admit") {
        const int64_t step = integer(fields, "step");
        if (node.status == Status::kJoiner && step == committed_step_ + 1 && !active_) {
            // From now on the epoch of `step` waits for it: the run cannot move past the state
            // it is fetching.
            node.status = Status::kMember;
            node.catching_up = false;
            send(id, to_json(Json{{"op", "admitted"}, {"step", step}}));
            note(PANGEA_LOG_INFO, "node " + std::to_string(id) + " takes part from step " + std::to_string(step) +
                                      " (recovering the state of step " + std::to_string(committed_step_) + ")");
        } else if (node.status == Status::kMember && step == committed_step_ + 1) {
            send(id, to_json(Json{{"op", "admitted"}, {"step", step}}));
        } else if (node.status == Status::kJoiner && step == committed_step_ + 1) {
            // Too late for the epoch running now, whose commit makes this node's state old. If
            // the next epoch started as soon as that one ended, a node whose fetch takes longer
            // than an outer step could never catch up: it waits for this node's next request.
            if (!node.catching_up)
                note(PANGEA_LOG_INFO, "node " + std::to_string(id) + " asked to take part during " +
                                          active_->epoch.describe() + "; the next epoch waits until it holds that state");
            node.catching_up = true;
            stale(id);
        } else {
            stale(id);
        }
    } else {
        note(PANGEA_LOG_WARN, "node " + std::to_string(id) + " sent unknown op '" + op + "'");
    }
}

std::vector<CoordinatorState::Send> CoordinatorState::on_closed(int connection, Time now) {
    out_.clear();
    now_ = now;
    challenges_.erase(connection);
    early_.erase(connection);
    const auto same = [&](const Hello& h) { return h.connection == connection; };
    held_.erase(std::remove_if(held_.begin(), held_.end(), same), held_.end());
    unregistered_.erase(std::remove_if(unregistered_.begin(), unregistered_.end(), same), unregistered_.end());
    if (const int id = node_of(connection); id >= 0) drop(id, "its connection closed");
    return std::move(out_);
}

std::vector<CoordinatorState::Send> CoordinatorState::on_tick(Time now) {
    out_.clear();
    now_ = now;
    // (Nobody held yet: nothing is known, and the window opens with the first hello.)
    if (collecting_ && now >= grace_end_ && !held_.empty()) {
        // Carry on from what the nodes hold: the furthest committed step is the run's. Everyone
        // held is welcomed before any epoch is decided.
        for (const Hello& h : held_) {
            if (!flag(h.fields, "has_state")) continue;
            const int64_t step = integer(h.fields, "step");
            const uint64_t epoch = static_cast<uint64_t>(integer(h.fields, "epoch"));
            if (step > committed_step_) committed_step_ = step, committed_epoch_ = epoch;
            next_epoch_ = std::max({next_epoch_, epoch + 1, static_cast<uint64_t>(integer(h.fields, "pending_epoch")) + 1});
            if (step > 0 || epoch > 0) started_ = true;
        }
        // Every node lost at once, then restarted from the run's checkpoints: the run's record
        // (etcd's, or this coordinator's) may be ahead of every state held, steps committed after
        // the newest complete checkpoint. Nobody can carry those on: the run goes back to the
        // newest step held, and nodes behind it recover from those at it.
        int64_t newest_held = -1;
        bool carries_on = false;
        for (const Hello& h : held_) {
            if (!flag(h.fields, "has_state")) continue;
            const int64_t step = integer(h.fields, "step");
            newest_held = std::max(newest_held, step);
            carries_on |= step == committed_step_ ||
                          (step + 1 == committed_step_ && text(h.fields, "waiting") == "done" &&
                           static_cast<uint64_t>(integer(h.fields, "pending_epoch")) == committed_epoch_ &&
                           flag(h.fields, "ok"));
        }
        if (started_ && newest_held >= 0 && !carries_on) {
            note(PANGEA_LOG_WARN, "the run committed step " + std::to_string(committed_step_) +
                                      ", but no node holds it any more: every node came back from a checkpoint; the " +
                                      "run carries on from step " + std::to_string(newest_held) +
                                      ", the newest held (the steps after it are trained again)");
            committed_step_ = newest_held;
            committed_epoch_ = 0;  // (a lost commit of the new step cannot be replayed: there is none)
        }
        const bool all_fresh = !held_.empty() && std::all_of(held_.begin(), held_.end(), [](const Hello& h) {
            return !flag(h.fields, "has_state") && !flag(h.fields, "join");
        });
        if (all_fresh && started_) {
            // The store remembers a run with this id, but every node starts afresh: a new run.
            note(PANGEA_LOG_WARN, "the store holds step " + std::to_string(committed_step_) +
                                      " of an earlier run with this id, but every node starts afresh: starting a new run");
            committed_step_ = 0;
            committed_epoch_ = 0;
            started_ = false;
        }
        if (started_) note(PANGEA_LOG_INFO, "carrying on the run at step " + std::to_string(committed_step_));
        // Members first, so that every node told to recover learns all the members to fetch from.
        std::stable_partition(held_.begin(), held_.end(), [&](const Hello& h) {
            return flag(h.fields, "has_state") && integer(h.fields, "step") >= committed_step_ - 1;
        });
        for (const Hello& h : held_) admit_hello(h.connection, h.fields, now);
        held_.clear();
        collecting_ = false;
        maybe_decide();
    }
    if (quorum_wait_ && quorum_wait_->told.empty()) maybe_decide();  // the grace window may be over
    // Members held at a boundary for long hear whom they wait for (slow nodes, a joiner still
    // fetching the state), so that no wait is silent.
    if (!collecting_ && !active_ && now - last_wait_note_ > std::chrono::seconds(10)) {
        std::string slow;
        std::vector<int> waiting;
        for (const auto& [id, node] : nodes_) {
            if (node.status != Status::kMember && !node.catching_up) continue;
            if (node.status == Status::kMember && node.ready_step == committed_step_ + 1) waiting.push_back(id);
            else slow += (slow.empty() ? "" : ", ") + std::to_string(id);
        }
        if (!waiting.empty() && !slow.empty()) {
            last_wait_note_ = now;
            const std::string message =
                to_json(Json{{"op", "waiting"},
                             {"reason", "outer step " + std::to_string(committed_step_ + 1) + " waits for node(s) " + slow +
                                            " (still training, or recovering the state)"}});
            for (int id : waiting) send(id, message);
        }
    }
    std::vector<int> silent;
    for (const auto& [id, node] : nodes_)
        if (!options_.registry && now - node.last_seen > options_.timeout) silent.push_back(id);
    for (int id : silent)
        drop(id, "no heartbeat for " + std::to_string(options_.timeout.count()) + " ms");
    return std::move(out_);
}

std::vector<CoordinatorState::Send> CoordinatorState::on_registered(int node, bool present, Time now) {
    out_.clear();
    now_ = now;
    if (present) {
        registered_.insert(node);
        if (!collecting_) {
            std::vector<Hello> ready;
            for (auto it = unregistered_.begin(); it != unregistered_.end();)
                if (integer(it->fields, "node") == node) ready.push_back(*it), it = unregistered_.erase(it);
                else ++it;
            for (const Hello& h : ready) welcome(h.connection, h.fields, now);
        }
    } else {
        registered_.erase(node);
        drop(node, "no heartbeat (its lease in the store expired, or it left)");
    }
    return std::move(out_);
}

void CoordinatorState::admit_hello(int connection, const Json& hello, Time now) {
    if (options_.registry && !registered_.count(static_cast<int>(integer(hello, "node"))))
        unregistered_.push_back({connection, hello});  // welcomed once its registration shows
    else
        welcome(connection, hello, now);
}

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

}  // namespace

CoordinatorServer::CoordinatorServer(const std::string& listen_address) : listener_(listen_address) {}

CoordinatorServer::~CoordinatorServer() = default;

const std::string& CoordinatorServer::address() const { return listener_.address(); }

void CoordinatorServer::serve(const CoordinatorOptions& options, const std::atomic<bool>& stop,
                              const RegistryChanges& registry) {
    using Clock = std::chrono::steady_clock;
    const TcpListener& listener = listener_;
    CoordinatorState state(options, Clock::now());
    std::map<int, std::unique_ptr<LineSocket>> connections;
    int next_connection = 1;
    std::map<int, Clock::time_point> silent;  // connections that have sent nothing yet, since when
    Clock::time_point last_refusal_note{};
    auto deliver = [&](const std::vector<CoordinatorState::Send>& sends) {
        for (const auto& s : sends) {
            const auto found = connections.find(s.connection);
            if (found == connections.end()) continue;
            if (!s.message.empty()) found->second->send(s.message);
            if (s.close) connections.erase(found);
        }
    };
    std::string last_description;
    while (!stop) {
        std::vector<pollfd> fds{{listener.fd(), POLLIN, 0}};
        std::vector<int> ids;
        for (const auto& [id, socket] : connections) {
            fds.push_back({socket->fd(), POLLIN, 0});
            ids.push_back(id);
        }
        if (::poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) break;
        if (fds[0].revents & POLLIN) {
            if (Fd fd = listener.accept(std::chrono::milliseconds(0))) {
                if (connections.size() >= options.max_connections) {
                    if (Clock::now() - last_refusal_note > std::chrono::seconds(10)) {
                        note(PANGEA_LOG_WARN, "closing new connections: " + std::to_string(connections.size()) +
                                                  " are open already (the most it keeps)");
                        last_refusal_note = Clock::now();
                    }
                } else {
                    const int id = next_connection++;
                    connections[id] = std::make_unique<LineSocket>(std::move(fd));
                    silent[id] = Clock::now();
                    deliver(state.on_connected(id));
                }
            }
        }
        for (size_t i = 1; i < fds.size(); ++i) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            const int id = ids[i - 1];
            const auto found = connections.find(id);
            if (found == connections.end()) continue;  // closed by an earlier decision
            std::vector<std::string> messages;
            const bool open = found->second->receive_available(&messages);
            if (!messages.empty()) silent.erase(id);
            for (const std::string& m : messages) deliver(state.on_message(id, m, Clock::now()));
            if (!open && connections.count(id)) {
                connections.erase(id);
                silent.erase(id);
                deliver(state.on_closed(id, Clock::now()));
            }
        }
        for (auto it = silent.begin(); it != silent.end();) {
            const int id = it->first;
            if (!connections.count(id)) {  // closed meanwhile
                it = silent.erase(it);
                continue;
            }
            if (Clock::now() - it->second < options.first_message_within) {
                ++it;
                continue;
            }
            note(PANGEA_LOG_WARN, "closed a connection that said nothing within " +
                                      std::to_string(options.first_message_within.count()) + " ms");
            it = silent.erase(it);
            connections.erase(id);
            deliver(state.on_closed(id, Clock::now()));
        }
        if (registry)
            for (const auto& [node, present] : registry()) deliver(state.on_registered(node, present, Clock::now()));
        deliver(state.on_tick(Clock::now()));
        if (state.superseded()) break;
        if (const std::string d = state.describe(); d != last_description) {
            note(PANGEA_LOG_DEBUG, d);
            last_description = d;
        }
    }
    note(PANGEA_LOG_INFO, "stopped at step " + std::to_string(state.committed_step()));
}

HostedCoordinator::HostedCoordinator(const std::string& listen_address, CoordinatorOptions options)
    : server_(listen_address) {
    note(PANGEA_LOG_INFO, "run " + options.run + ": serving the coordinator from this node on " + server_.address());
    thread_ = std::thread([this, options = std::move(options)] {
        try {
            server_.serve(options, stop_);
        } catch (const std::exception& e) {  // the nodes notice it gone, and say so
            note(PANGEA_LOG_ERROR, "run " + options.run + ": the coordinator served from this node stopped: " + e.what());
        }
    });
}

HostedCoordinator::~HostedCoordinator() {
    stop_ = true;
    thread_.join();
}

int run_coordinator(const std::string& listen_address, const CoordinatorOptions& options,
                    const std::string& address_file) {
    CoordinatorServer server(listen_address);
    if (!address_file.empty()) write_file_atomically(address_file, server.address());
    note(PANGEA_LOG_INFO, "run " + options.run + ": listening on " + server.address() + " (timeout " +
                              std::to_string(options.timeout.count()) + " ms, min members " +
                              std::to_string(options.min_members) + ")");
    struct sigaction action{};
    action.sa_handler = on_signal;
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
    server.serve(options, g_stop);
    return 0;
}

}  // namespace pangea
