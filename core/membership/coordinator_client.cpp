#include "membership/coordinator_client.hpp"

#include "common/json.hpp"
#include "common/log.hpp"
#include "topology/auth.hpp"
#include "membership/coordinator.hpp"

namespace pangea {
namespace {

void note(pangea_log_level level, const std::string& message) { log(level, "mesh", message); }

// Fields of the coordinator's messages (a missing or mistyped one reads as "" or -1).
std::string field(const Json& m, const char* key) { return json_string(m, key).value_or(""); }
int64_t number(const Json& m, const char* key) { return json_int(m, key).value_or(-1); }

// One line from the coordinator; null when it is not JSON.
Json parse_message(const std::string& line) {
    try {
        return parse_json(line);
    } catch (const JsonError&) {
        return nullptr;
    }
}

}  // namespace

CoordinatorClient::CoordinatorClient(CoordinatorClientOptions options)
    : options_(std::move(options)), incarnation_(random_nonce()) {
    if (options_.resumed_step >= 0) has_state_ = true, step_ = options_.resumed_step;
}

CoordinatorClient::~CoordinatorClient() {
    stop_ = true;
    {
        std::lock_guard lock(mutex_);
        if (socket_) socket_->shutdown();
    }
    changed_.notify_all();
    if (reader_.joinable()) reader_.join();
    if (heartbeats_.joinable()) heartbeats_.join();
}

std::string CoordinatorClient::hello(const std::string& challenge) const {
    Json hello{{"op", "hello"},
               {"protocol", 1},
               {"run", options_.run},
               {"node", options_.node},
               {"address", options_.address},
               {"has_state", has_state_},
               {"step", step_},
               {"epoch", epoch_},
               {"waiting", waiting_},
               {"inner_steps", ready_inner_steps_},
               {"pending_epoch", pending_epoch_},
               {"ok", pending_ok_},
               {"join", options_.join},
               {"rings", options_.rings},
               {"compression", options_.compression},
               {"incarnation", incarnation_},
               {"nonce", nonce_},
               {"proof", options_.secret.empty() ? std::string()
                                                 : coordinator_proof(options_.secret, challenge, options_.run, options_.node)}};
    if (!options_.ring_addresses.empty()) hello["ring_addresses"] = options_.ring_addresses;
    return to_json(hello);
}

bool CoordinatorClient::send(const std::string& message) {
    std::lock_guard lock(mutex_);
    return send_locked(message);
}

bool CoordinatorClient::send_locked(const std::string& message) { return socket_ && socket_->send(message); }

void CoordinatorClient::run_connection() {
    auto away_since = std::chrono::steady_clock::now();
    bool warned = false;
    while (!stop_) {
        std::unique_ptr<LineSocket> socket;
        std::string challenge_line;
        Message challenge;
        try {
            address_ = options_.locate ? options_.locate() : options_.coordinator;
            if (address_.empty()) throw SocketError("no coordinator is known yet");
            socket = std::make_unique<LineSocket>(connect_tcp(address_, std::chrono::milliseconds(1000)));
            const auto greeted = socket->receive(&challenge_line, 5000);
            challenge = parse_message(challenge_line);
            if (greeted != LineSocket::Received::kMessage || field(challenge, "op") != "challenge")
                throw SocketError(address_ + " did not greet as a pangea coordinator");
        } catch (const std::exception& e) {  // SocketError, or MeshError from locating it
            const auto away = std::chrono::steady_clock::now() - away_since;
            if (away > options_.reconnect_for) {
                std::lock_guard lock(mutex_);
                fatal_ = "the coordinator at " + address_ + " has not answered for " +
                         std::to_string(options_.reconnect_for.count()) + " ms (" + e.what() + ")";
                changed_.notify_all();
                return;
            }
            if (!warned) note(PANGEA_LOG_WARN, std::string("node ") + std::to_string(options_.node) + ": " + e.what() + "; retrying");
            warned = true;
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
            continue;
        }
        {
            std::lock_guard lock(mutex_);
            nonce_ = random_nonce();
            if (!socket->send(hello(field(challenge, "nonce")))) continue;
            socket_ = std::move(socket);
            connected_to_ = address_;
        }
        if (warned) note(PANGEA_LOG_INFO, "node " + std::to_string(options_.node) + ": reconnected to the coordinator");
        warned = false;
        while (!stop_) {
            std::string line;
            const auto received = socket_->receive(&line, 200);
            if (received == LineSocket::Received::kTimeout) continue;
            if (received == LineSocket::Received::kClosed) break;
            Message message = parse_message(line);
            if (!message.is_object()) break;
            const std::string op = field(message, "op");
            if (op == "refused") {
                std::lock_guard lock(mutex_);
                fatal_ = "the coordinator at " + address_ + " refused node " + std::to_string(options_.node) +
                         ": " + field(message, "reason");
                changed_.notify_all();
                return;
            }
            if (op == "waiting") note(PANGEA_LOG_WARN, field(message, "reason"));
            if (op == "wrap_up") {  // (for the training thread, not for a call waiting here)
                std::function<void(int64_t)> wrap_up;
                {
                    std::lock_guard lock(mutex_);
                    wrap_up = wrap_up_handler_;
                }
                if (wrap_up) wrap_up(number(message, "step"));
                continue;
            }
            if (op == "welcome" && !options_.secret.empty() &&
                !same_digest(field(message, "proof"), coordinator_reply_proof(options_.secret, nonce_))) {
                std::lock_guard lock(mutex_);
                fatal_ = "the coordinator at " + address_ + " does not hold the run's secret";
                changed_.notify_all();
                return;
            }
            std::function<void(uint64_t)> abort;
            uint64_t aborted_epoch = 0;
            {
                std::lock_guard lock(mutex_);
                // A retry of the epoch we are all-reducing in: the collective must stop waiting.
                if (op == "retry" && waiting_ == "epoch" && static_cast<uint64_t>(number(message, "epoch")) == pending_epoch_)
                    abort = abort_handler_, aborted_epoch = pending_epoch_;
                inbox_.push_back(std::move(message));
            }
            changed_.notify_all();
            if (abort) abort(aborted_epoch);
        }
        std::lock_guard lock(mutex_);
        socket_.reset();
        away_since = std::chrono::steady_clock::now();
    }
}

void CoordinatorClient::run_heartbeats() {
    const std::string beat = to_json(Json{{"op", "beat"}});
    std::unique_lock lock(mutex_);
    while (!stop_) {
        changed_.wait_for(lock, options_.heartbeat, [&] { return stop_.load(); });
        if (!socket_) continue;
        if (options_.send_beats) socket_->send(beat);
        if (!options_.locate) continue;
        const std::string connected = connected_to_;
        lock.unlock();
        const std::string elected = options_.locate();  // an etcd read: not under the lock
        lock.lock();
        if (socket_ && connected_to_ == connected && !elected.empty() && elected != connected) {
            note(PANGEA_LOG_WARN, "node " + std::to_string(options_.node) + ": the coordinator moved from " + connected +
                                      " to " + elected + "; reconnecting");
            socket_->shutdown();  // the reader reconnects
        }
    }
}

std::variant<CoordinatorClient::Message, Rejoin> CoordinatorClient::wait_for(
    std::initializer_list<const char*> ops, const std::function<bool(const Message&)>& accept) {
    std::unique_lock lock(mutex_);
    while (true) {
        while (!inbox_.empty()) {
            Message message = std::move(inbox_.front());
            inbox_.pop_front();
            const std::string op = field(message, "op");
            if (op == "stale" || (op == "welcome" && field(message, "role") == "recover" && has_state_)) {
                has_state_ = false;
                waiting_.clear();
                return Rejoin{"node " + std::to_string(options_.node) +
                                  " was dropped from the run (it went silent past the timeout, or the run moved on); "
                                  "the run is at outer step " + std::to_string(number(message, "step")),
                              number(message, "step"), decode_members(message.value("members", Json()))};
            }
            for (const char* wanted : ops)
                if (op == wanted && accept(message)) return message;
            // Anything else (a late retry of an epoch already left, an informational message) is
            // not for this call.
        }
        if (!fatal_.empty()) throw MeshError(fatal_);
        if (stop_) throw MeshError("the membership client is stopping");
        changed_.wait(lock);
    }
}

JoinResult CoordinatorClient::join() {
    reader_ = std::thread([this] { run_connection(); });
    heartbeats_ = std::thread([this] { run_heartbeats(); });
    const auto answer = wait_for({"welcome"}, [](const Message&) { return true; });
    if (const auto* dropped = std::get_if<Rejoin>(&answer)) return {Role::kRecover, dropped->run_step, dropped->sources};
    const Message& welcome = std::get<Message>(answer);
    JoinResult result;
    result.step = number(welcome, "step");
    result.sources = decode_members(welcome.value("members", Json()));
    result.role = field(welcome, "role") == "member" ? Role::kMember : Role::kRecover;
    std::lock_guard lock(mutex_);
    if (result.role == Role::kMember) has_state_ = true;
    return result;
}

std::variant<Epoch, Rejoin> CoordinatorClient::ready(int64_t step, int64_t inner_steps) {
    {
        std::lock_guard lock(mutex_);
        waiting_ = "ready";
        ready_inner_steps_ = inner_steps;
    }
    send(to_json(Json{{"op", "ready"}, {"step", step}, {"inner_steps", inner_steps}}));
    while (true) {
        const auto answer = wait_for({"epoch", "waiting"}, [&](const Message& m) {
            return field(m, "op") == "waiting" ? number(m, "joiners") > 0 : number(m, "step") == step;
        });
        if (const auto* dropped = std::get_if<Rejoin>(&answer)) return *dropped;
        const Message& message = std::get<Message>(answer);
        if (field(message, "op") == "epoch") return epoch_of(message, step);
        if (joiners_blocked_handler_) joiners_blocked_handler_();
    }
}

Epoch CoordinatorClient::epoch_of(const Message& message, int64_t step) {
    Epoch epoch;
    epoch.id = static_cast<uint64_t>(number(message, "epoch"));
    epoch.step = step;
    epoch.members = decode_members(message.value("members", Json()));
    // One count per member, in the members' order (a coordinator of an older build sends none).
    if (const auto counts = message.find("inner_steps"); counts != message.end()) {
        if (!counts->is_array() || counts->size() != epoch.members.size())
            throw MeshError("bad epoch from the coordinator: inner_steps " + to_json(*counts).substr(0, 200) +
                            " is not one count per member (" + std::to_string(epoch.members.size()) + ")");
        for (size_t i = 0; i < counts->size(); ++i)
            if ((*counts)[i].is_number_integer() && (*counts)[i].get<int64_t>() >= 0)
                epoch.inner_steps[epoch.members[i].node] = (*counts)[i].get<int64_t>();
    }
    std::lock_guard lock(mutex_);
    waiting_ = "epoch";
    pending_epoch_ = epoch.id;
    return epoch;
}

std::variant<EpochEnd, Rejoin> CoordinatorClient::done(const Epoch& epoch, const std::string& error, std::string* why) {
    const bool ok = error.empty();
    {
        std::lock_guard lock(mutex_);
        waiting_ = "done";
        pending_ok_ = ok;
    }
    // (Cut short: the coordinator passes it on to every member.)
    send(to_json(Json{{"op", "done"}, {"epoch", epoch.id}, {"ok", ok}, {"error", error.substr(0, kMaxErrorText)}}));
    const auto answer = wait_for({"commit", "retry"}, [&](const Message& m) {
        return static_cast<uint64_t>(number(m, "epoch")) == epoch.id;
    });
    if (const auto* dropped = std::get_if<Rejoin>(&answer)) return *dropped;
    const Message& message = std::get<Message>(answer);
    std::lock_guard lock(mutex_);
    waiting_.clear();
    if (field(message, "op") == "retry") {
        *why = field(message, "reason");
        note(PANGEA_LOG_WARN, "node " + std::to_string(options_.node) + ": " + epoch.describe() + " is retried: " + *why);
        return EpochEnd::kRetried;
    }
    step_ = epoch.step;
    epoch_ = epoch.id;
    joiners_ = static_cast<int>(number(message, "joiners"));
    return EpochEnd::kCommitted;
}

void CoordinatorClient::forget_staleness() {
    std::erase_if(inbox_, [](const Message& m) {
        const std::string op = field(m, "op");
        return op == "stale" || op == "welcome";
    });
}

void CoordinatorClient::reserve(int64_t step) {
    std::lock_guard lock(mutex_);
    reserved_ = step;
    forget_staleness();
    send_locked(to_json(Json{{"op", "admit"}, {"step", step}}));
}

std::optional<Rejoin> CoordinatorClient::admit(int64_t step) {
    const std::string request = to_json(Json{{"op", "admit"}, {"step", step}});
    {
        std::lock_guard lock(mutex_);
        waiting_.clear();
        if (reserved_ != step) {
            forget_staleness();
            send_locked(request);
        }
        reserved_ = 0;
    }
    // A welcome means a new coordinator (a restart, or another node elected): it has not heard
    // the request, so ask again. Until admitted, hellos say this node holds no state.
    while (true) {
        const auto answer = wait_for({"admitted", "welcome"}, [](const Message&) { return true; });
        if (const auto* dropped = std::get_if<Rejoin>(&answer)) return *dropped;
        if (field(std::get<Message>(answer), "op") == "admitted") break;
        send(request);
    }
    std::lock_guard lock(mutex_);
    has_state_ = true;
    step_ = step - 1;
    return std::nullopt;
}

void CoordinatorClient::on_abort(std::function<void(uint64_t epoch)> handler) {
    std::lock_guard lock(mutex_);
    abort_handler_ = std::move(handler);
}

void CoordinatorClient::on_wrap_up(std::function<void(int64_t step)> handler) {
    std::lock_guard lock(mutex_);
    wrap_up_handler_ = std::move(handler);
}

void CoordinatorClient::leave() {
    {
        // Under the lock: the reader cannot drop the socket before the message is out, and stops
        // before the coordinator's answering close could look like a reason to reconnect.
        std::lock_guard lock(mutex_);
        if (socket_) socket_->send(to_json(Json{{"op", "leave"}}));
        stop_ = true;
        if (socket_) socket_->shutdown();
    }
    changed_.notify_all();
}

}  // namespace pangea
