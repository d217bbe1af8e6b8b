// Live recovery: a joining node fetches the whole training state from a live member over the
// transport (channel kRecoveryChannel), in checksummed chunks. Should the source die halfway,
// the joiner goes on from where it was with another member: sections that are the same on every
// member (parameters, outer optimizer state, counters) resume at the byte; per-node sections
// (the inner optimizer's moments) start over from the new source.
//
// Wire format (little-endian): request (40 bytes: "PGRQ", version, min step, section, offset,
// wait ms), then the server's preamble (16 bytes: "PGST", section count or 0 when it has no
// snapshot that new yet, step), section table (48 bytes each: name, size, CRC-32, shared), and
// the bytes from the requested point on in chunks of up to 1 MiB, each an 8-byte header (length,
// CRC-32) and the payload.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "membership/membership.hpp"
#include "topology/peers.hpp"

namespace pangea {

struct StateSection {
    std::string name;  // at most 31 bytes
    std::vector<uint8_t> bytes;
    bool shared = true;  // identical on every member
};

struct StateSnapshot {
    int64_t step = 0;  // outer steps committed when it was taken
    std::vector<StateSection> sections;
    const StateSection& at(const std::string& name) const;  // throws MeshError if missing
};

// A member's side: keeps the latest snapshot and serves it to whoever asks.
class StateServer {
public:
    void publish(std::shared_ptr<const StateSnapshot> snapshot);  // nullptr: none kept
    // Answers one request on `connection` (from the peer acceptor's handler thread).
    void serve(const PluginInstance& transport, OwnedConnection connection, const pangea_hello& peer);
    void stop();  // wakes requests waiting for a snapshot

private:
    std::mutex mutex_;
    std::condition_variable published_;
    std::shared_ptr<const StateSnapshot> snapshot_;
    bool stopped_ = false;
};

struct FetchReport {
    uint64_t bytes = 0;        // payload received, including what a failed source sent
    double seconds = 0;        // from the first byte offered to the last received
    double waited_seconds = 0;  // before that: for a member to have a snapshot new enough
    std::vector<int> sources;  // members the bytes came from, in order
};

// Fetches a snapshot of step >= min_step from `sources` (proving the run's `secret` to each,
// topology/auth.hpp), moving to the next one on failure,
// until `timeout`. A source whose snapshot claims more than `max_bytes` in all is refused before
// anything is allocated for it. `on_step` is called when a source offers a snapshot, with its step, before
// the bytes come. Throws MeshError saying which sources failed and why.
StateSnapshot fetch_state(const PluginInstance& transport, const std::vector<Member>& sources, int node,
                          uint64_t run_id, const std::string& secret, int64_t min_step,
                          std::chrono::milliseconds timeout, uint64_t max_bytes, FetchReport* report,
                          const std::function<void(int64_t step)>& on_step = {});

}  // namespace pangea
