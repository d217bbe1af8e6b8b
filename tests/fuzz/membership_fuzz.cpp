// core/mesh: the membership protocol. The builtin coordinator's state machine (CoordinatorState,
// which serve() feeds every line a node sends) driven by a script of events, and the client's
// reading of what comes back (parse_json, decode_members: coordinator_client.cpp).
//
// Input: a first byte of options (bit 0: a registry (etcd) decides who is present; bits 1-2:
// record_commit absent, accepting, refusing (superseded) or failing; bit 3: min_members 2;
// bit 4: a run secret), then one event per line:
//   c<k>         connection k (one character) opens
//   m<k><json>   connection k sends a message (one line of JSON)
//   x<k>         connection k closes
//   t<n>         n x 100 ms pass (n: digits), then the periodic tick
//   r<node>,<p>  with a registry: node registered (p = 1) or gone (0)
// Properties: no call throws; every message the coordinator sends is one line that parses as a
// JSON object with an "op", and its member list (if any) is an array that decodes. The member list of any message a client
// receives either decodes or throws MeshError.
#include <chrono>

#include "common/json.hpp"
#include "fuzz_support.hpp"
#include "membership/coordinator.hpp"

namespace {

using namespace pangea;
using Time = CoordinatorState::Time;

void check_sends(const std::vector<CoordinatorState::Send>& sends) {
    for (const auto& send : sends) {
        if (send.message.empty()) continue;
        FUZZ_CHECK(send.message.find('\n') == std::string::npos, "the coordinator sent more than a line: " + send.message);
        Json message;
        try {
            message = parse_json(send.message);
        } catch (const JsonError& e) {
            FUZZ_CHECK(false, "the coordinator sent a message that is not JSON (" + std::string(e.what()) + "): " + send.message);
        }
        FUZZ_CHECK(json_string(message, "op").has_value(), "the coordinator sent a message no client can read: " + send.message);
        if (message.contains("members")) {
            try {
                (void)decode_members(message["members"]);
            } catch (const MeshError& e) {
                FUZZ_CHECK(false, "the coordinator sent a member list no client can read: " + send.message);
            }
        }
    }
}

// What a client does with a line from the coordinator.
void read_as_client(const std::string& line) {
    Json message;
    try {
        message = parse_json(line);
    } catch (const JsonError&) {
        return;
    }
    if (message.is_object() && message.contains("members")) {
        try {
            for (const Member& m : decode_members(message["members"])) (void)m;
        } catch (const MeshError&) {
        }
    }
}

int64_t digits(const std::string& text) {
    int64_t n = 0;
    for (char c : text) {
        if (c < '0' || c > '9' || n > 100000) break;
        n = n * 10 + (c - '0');
    }
    return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input input(data, size);
    const uint8_t flags = input.byte();
    CoordinatorOptions options;
    options.run = "5eed";
    options.timeout = std::chrono::milliseconds(3000);
    options.registry = flags & 1;
    switch ((flags >> 1) & 3) {
        case 1: options.record_commit = [](const Epoch&) { return true; }; break;
        case 2: options.record_commit = [](const Epoch&) { return false; }; break;
        case 3: options.record_commit = [](const Epoch&) -> bool { throw MeshError("the store is unreachable"); }; break;
        default: break;
    }
    options.min_members = (flags & 8) ? 2 : 1;
    if (flags & 16) options.secret = "fuzz-secret";

    Time now{std::chrono::hours(1)};
    CoordinatorState state(options, now);
    for (int events = 0; !input.empty() && events < 256 && !state.superseded(); ++events) {
        const std::string line = input.line();
        if (line.size() < 2) continue;
        const int connection = static_cast<unsigned char>(line[1]);
        switch (line[0]) {
            case 'c': check_sends(state.on_connected(connection)); break;
            case 'm':
                read_as_client(line.substr(2));
                check_sends(state.on_message(connection, line.substr(2), now));
                break;
            case 'x': check_sends(state.on_closed(connection, now)); break;
            case 't':
                now += std::chrono::milliseconds(100) * digits(line.substr(1));
                check_sends(state.on_tick(now));
                break;
            case 'r': {
                const size_t comma = line.find(',');
                const int node = static_cast<int>(digits(line.substr(1)));
                check_sends(state.on_registered(node, comma != std::string::npos && line.substr(comma + 1) == "1", now));
                break;
            }
            default: break;
        }
        (void)state.describe();
    }
    return 0;
}
