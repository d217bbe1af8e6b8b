#include "recovery/state_transfer.hpp"

#include <cstdio>
#include <cstring>
#include <deque>
#include <thread>

#include "collective/link.hpp"
#include "common/crc32.hpp"
#include "common/log.hpp"
#include "topology/auth.hpp"

namespace pangea {
namespace {

constexpr uint32_t kRequestMagic = 0x51524750;   // "PGRQ"
constexpr uint32_t kSnapshotMagic = 0x54534750;  // "PGST"
constexpr uint32_t kVersion = 1;
constexpr size_t kRequestBytes = 40, kPreambleBytes = 16, kEntryBytes = 48, kChunkHeaderBytes = 8;
constexpr size_t kChunk = 1 << 20;
constexpr size_t kNameBytes = 32;
constexpr int kIoTimeoutMs = 30000;  // no byte for this long: the source is gone

template <typename T>
void put(std::vector<uint8_t>& out, size_t at, T value) {
    std::memcpy(out.data() + at, &value, sizeof value);
}
template <typename T>
T get(const std::vector<uint8_t>& in, size_t at) {
    T value;
    std::memcpy(&value, in.data() + at, sizeof value);
    return value;
}

struct Entry {
    std::string name;
    uint64_t size = 0;
    uint32_t crc = 0;
    bool shared = true;
    bool operator==(const Entry&) const = default;
};

class TransferError : public MeshError {
public:
    using MeshError::MeshError;
};

// Blocking send and receive of one message, bounded in time.
void send_all(const Link& link, const void* data, size_t bytes, const char* what) {
    pangea_status status = PANGEA_OK;
    Request request = link.send(data, bytes, &status);
    if (request.pending()) status = request.wait(kIoTimeoutMs);
    if (status != PANGEA_OK) {
        link.abort();
        throw TransferError(std::string("sending the ") + what + ": " + link.transport().describe_failure("send", status));
    }
}

void receive_all(const Link& link, void* data, size_t bytes, const char* what) {
    pangea_status status = PANGEA_OK;
    Request request = link.receive(data, bytes, &status);
    if (request.pending()) status = request.wait(kIoTimeoutMs);
    if (status != PANGEA_OK) {
        link.abort();
        throw TransferError(std::string("receiving the ") + what + ": " +
                            (status == PANGEA_ERR_TIMEOUT ? std::string("nothing for ") + std::to_string(kIoTimeoutMs / 1000) + " s"
                                                          : link.transport().describe_failure("receive", status)));
    }
}

}  // namespace

const StateSection& StateSnapshot::at(const std::string& name) const {
    for (const StateSection& s : sections)
        if (s.name == name) return s;
    throw MeshError("the recovered state has no section '" + name + "'");
}

void StateServer::publish(std::shared_ptr<const StateSnapshot> snapshot) {
    std::lock_guard lock(mutex_);
    snapshot_ = std::move(snapshot);
    published_.notify_all();
}

void StateServer::stop() {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    published_.notify_all();
}

void StateServer::serve(const PluginInstance& transport, OwnedConnection connection, const pangea_hello& peer) {
    const Link link(transport, connection.handle());
    const std::string who = "state request of node " + std::to_string(peer.node_id);
    try {
        std::vector<uint8_t> request(kRequestBytes);
        receive_all(link, request.data(), request.size(), "request");
        if (get<uint32_t>(request, 0) != kRequestMagic || get<uint32_t>(request, 4) != kVersion)
            throw TransferError("not a state request of version " + std::to_string(kVersion));
        const int64_t min_step = get<int64_t>(request, 8);
        uint32_t section = get<uint32_t>(request, 16);
        uint64_t offset = get<uint64_t>(request, 24);
        const auto wait = std::chrono::milliseconds(std::min<uint64_t>(get<uint64_t>(request, 32), 60000));
        std::shared_ptr<const StateSnapshot> snapshot;
        {
            std::unique_lock lock(mutex_);
            published_.wait_for(lock, wait, [&] { return stopped_ || (snapshot_ && snapshot_->step >= min_step); });
            if (snapshot_ && snapshot_->step >= min_step) snapshot = snapshot_;
        }
        std::vector<uint8_t> preamble(kPreambleBytes);
        put(preamble, 0, kSnapshotMagic);
        put(preamble, 4, static_cast<uint32_t>(snapshot ? snapshot->sections.size() : 0));
        put(preamble, 8, snapshot ? snapshot->step : int64_t{-1});
        send_all(link, preamble.data(), preamble.size(), "preamble");
        if (!snapshot) return;
        std::vector<uint8_t> table(kEntryBytes * snapshot->sections.size());
        for (size_t i = 0; i < snapshot->sections.size(); ++i) {
            const StateSection& s = snapshot->sections[i];
            std::memcpy(table.data() + i * kEntryBytes, s.name.c_str(), std::min(s.name.size(), kNameBytes - 1));
            put(table, i * kEntryBytes + 32, static_cast<uint64_t>(s.bytes.size()));
            put(table, i * kEntryBytes + 40, crc32(s.bytes.data(), s.bytes.size()));
            put(table, i * kEntryBytes + 44, static_cast<uint32_t>(s.shared));
        }
        send_all(link, table.data(), table.size(), "section table");
        log(PANGEA_LOG_INFO, "mesh", "serving the state of step " + std::to_string(snapshot->step) + " to node " +
                                         std::to_string(peer.node_id) + " from byte " + std::to_string(offset) +
                                         " of section " + std::to_string(section));
        // The chunks, several in flight so that the link stays busy across round trips.
        struct InFlight {
            std::vector<uint8_t> header;
            Request header_request, payload_request;
        };
        std::deque<InFlight> in_flight;
        auto complete_oldest = [&] {
            InFlight& oldest = in_flight.front();
            for (Request* r : {&oldest.header_request, &oldest.payload_request}) {
                const pangea_status status = r->pending() ? r->wait(kIoTimeoutMs) : PANGEA_OK;
                if (status != PANGEA_OK) {
                    link.abort();
                    throw TransferError("sending a chunk: " + transport.describe_failure("send", status));
                }
            }
            in_flight.pop_front();
        };
        for (; section < snapshot->sections.size(); ++section, offset = 0) {
            const std::vector<uint8_t>& bytes = snapshot->sections[section].bytes;
            for (uint64_t at = offset; at < bytes.size(); at += kChunk) {
                const size_t length = static_cast<size_t>(std::min<uint64_t>(kChunk, bytes.size() - at));
                InFlight chunk;
                chunk.header.resize(kChunkHeaderBytes);
                put(chunk.header, 0, static_cast<uint32_t>(length));
                put(chunk.header, 4, crc32(bytes.data() + at, length));
                pangea_status status = PANGEA_OK;
                chunk.header_request = link.send(chunk.header.data(), chunk.header.size(), &status);
                if (status == PANGEA_OK) chunk.payload_request = link.send(bytes.data() + at, length, &status);
                if (status != PANGEA_OK) {
                    link.abort();
                    throw TransferError("sending a chunk: " + transport.describe_failure("send", status));
                }
                in_flight.push_back(std::move(chunk));
                if (in_flight.size() >= 8) complete_oldest();
            }
        }
        while (!in_flight.empty()) complete_oldest();
        log(PANGEA_LOG_INFO, "mesh", "served the state of step " + std::to_string(snapshot->step) + " to node " +
                                         std::to_string(peer.node_id));
    } catch (const MeshError& e) {
        log(PANGEA_LOG_WARN, "mesh", who + ": " + e.what());
    }
}

StateSnapshot fetch_state(const PluginInstance& transport, const std::vector<Member>& sources, int node,
                          uint64_t run_id, const std::string& secret, int64_t min_step,
                          std::chrono::milliseconds timeout, uint64_t max_bytes, FetchReport* report,
                          const std::function<void(int64_t step)>& on_step) {
    if (sources.empty()) throw MeshError("node " + std::to_string(node) + " must recover its state but the run has no other member");
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + timeout;
    const auto& vt = transport.vtable<pangea_transport_vtable>();
    pangea_hello self{};
    self.struct_size = sizeof self;
    self.node_id = static_cast<uint32_t>(node);
    self.run_id = run_id;
    self.channel = kRecoveryChannel;

    // What has arrived so far.
    int64_t step = -1;
    std::vector<Entry> table;
    std::vector<std::vector<uint8_t>> data;
    std::vector<uint64_t> received;
    std::vector<uint32_t> running_crc;
    auto forget = [&] {
        step = -1;
        table.clear();
        data.clear();
        received.clear();
        running_crc.clear();
    };
    std::string failures;
    auto transfer_start = start;
    auto last_progress = start;
    for (size_t attempt = 0;; ++attempt) {
        if (std::chrono::steady_clock::now() > deadline)
            throw MeshError("node " + std::to_string(node) + " could not fetch the state of step >= " +
                            std::to_string(min_step) + " within " + std::to_string(timeout.count()) + " ms:" + failures);
        const Member& source = sources[attempt % sources.size()];
        // Where to go on from: the first incomplete section; a per-node section starts over.
        uint32_t section = 0;
        while (section < table.size() && received[section] == table[section].size) ++section;
        if (section < table.size() && !table[section].shared) received[section] = 0, running_crc[section] = 0;
        const uint64_t offset = section < table.size() ? received[section] : 0;
        try {
            pangea_connection* handle = nullptr;
            pangea_hello peer{};
            if (const pangea_status status = vt.connect(transport.handle(), source.address.c_str(), &self, 5000, &peer, &handle);
                status != PANGEA_OK)
                throw TransferError(transport.describe_failure("connect to " + source.address, status));
            OwnedConnection connection(&transport, handle);
            const Link link(transport, connection.handle());
            authenticate_link(link, secret, /*initiator=*/true);
            std::vector<uint8_t> request(kRequestBytes);
            put(request, 0, kRequestMagic);
            put(request, 4, kVersion);
            put(request, 8, step >= 0 ? step : min_step);
            put(request, 16, section);
            put(request, 24, offset);
            put(request, 32, uint64_t{2000});
            send_all(link, request.data(), request.size(), "request");
            std::vector<uint8_t> preamble(kPreambleBytes);
            receive_all(link, preamble.data(), preamble.size(), "preamble");
            if (get<uint32_t>(preamble, 0) != kSnapshotMagic) throw TransferError("the answer is not a state snapshot");
            const uint32_t count = get<uint32_t>(preamble, 4);
            if (count == 0) {  // no snapshot that new yet: members take one at the next commit
                --attempt;     // not a failure: ask the same member again
                continue;
            }
            if (count > 1024) throw TransferError("the snapshot claims " + std::to_string(count) + " sections");
            std::vector<uint8_t> raw(kEntryBytes * count);
            receive_all(link, raw.data(), raw.size(), "section table");
            std::vector<Entry> offered(count);
            for (uint32_t i = 0; i < count; ++i) {
                offered[i].name.assign(reinterpret_cast<const char*>(raw.data() + i * kEntryBytes),
                                       strnlen(reinterpret_cast<const char*>(raw.data() + i * kEntryBytes), kNameBytes));
                offered[i].size = get<uint64_t>(raw, i * kEntryBytes + 32);
                offered[i].crc = get<uint32_t>(raw, i * kEntryBytes + 40);
                offered[i].shared = get<uint32_t>(raw, i * kEntryBytes + 44) != 0;
            }
            uint64_t offered_bytes = 0;
            for (const Entry& e : offered) offered_bytes += std::min<uint64_t>(e.size, max_bytes + 1);
            if (offered_bytes > max_bytes)  // checked before anything is allocated for it
                throw TransferError("the snapshot claims more than " + std::to_string(max_bytes) +
                                    " bytes, more than a state of this run can hold");
            const int64_t offered_step = get<int64_t>(preamble, 8);
            if (offered_step < min_step)  // an honest member answers "none that new yet" instead
                throw TransferError("the snapshot is of step " + std::to_string(offered_step) + ", older than step " +
                                    std::to_string(min_step) + " asked for");
            bool compatible = step == offered_step && offered.size() == table.size();
            for (size_t i = 0; compatible && i < table.size(); ++i)
                compatible = offered[i].shared ? offered[i] == table[i]
                                               : offered[i].name == table[i].name && !table[i].shared;
            if (!compatible) {
                if (step >= 0 || section != 0 || offset != 0) {
                    // A newer snapshot than the one we had begun: start over with it.
                    forget();
                    --attempt;
                    continue;
                }
                step = offered_step;
                table = offered;
                transfer_start = std::chrono::steady_clock::now();
                if (on_step) on_step(step);
                for (const Entry& e : table) {
                    data.emplace_back(e.size);
                    received.push_back(0);
                    running_crc.push_back(0);
                }
            } else {
                for (size_t i = section; i < table.size(); ++i) table[i] = offered[i];  // per-node sizes may differ
                for (size_t i = section; i < table.size(); ++i) data[i].resize(table[i].size);
            }
            report->sources.push_back(source.node);
            std::vector<uint8_t> header(kChunkHeaderBytes);
            for (uint32_t s = section; s < table.size(); ++s) {
                while (received[s] < table[s].size) {
                    const size_t length = static_cast<size_t>(std::min<uint64_t>(kChunk, table[s].size - received[s]));
                    receive_all(link, header.data(), header.size(), "chunk header");
                    if (get<uint32_t>(header, 0) != length)
                        throw TransferError("a chunk of section " + table[s].name + " has " +
                                            std::to_string(get<uint32_t>(header, 0)) + " bytes, expected " + std::to_string(length));
                    uint8_t* at = data[s].data() + received[s];
                    receive_all(link, at, length, "chunk");
                    if (crc32(at, length) != get<uint32_t>(header, 4))
                        throw TransferError("a chunk of section " + table[s].name + " at byte " +
                                            std::to_string(received[s]) + " fails its checksum");
                    running_crc[s] = crc32(at, length, running_crc[s]);
                    received[s] += length;
                    report->bytes += length;
                    if (std::chrono::steady_clock::now() - last_progress > std::chrono::seconds(10)) {
                        // A large model's state takes a while over a WAN: say how far it got.
                        last_progress = std::chrono::steady_clock::now();
                        uint64_t have = 0, total = 0;
                        for (size_t i = 0; i < table.size(); ++i) have += received[i], total += table[i].size;
                        const double seconds = std::chrono::duration<double>(last_progress - transfer_start).count();
                        char line[160];
                        std::snprintf(line, sizeof line, "node %d: %.0f of %.0f MiB of the state from node %d (%.1f MB/s)",
                                      node, have / 1048576.0, total / 1048576.0, source.node, report->bytes / 1e6 / seconds);
                        log(PANGEA_LOG_INFO, "mesh", line);
                    }
                }
                if (running_crc[s] != table[s].crc) {
                    received[s] = 0, running_crc[s] = 0;
                    throw TransferError("section " + table[s].name + " fails its checksum");
                }
            }
            StateSnapshot snapshot;
            snapshot.step = step;
            for (size_t i = 0; i < table.size(); ++i) snapshot.sections.push_back({table[i].name, std::move(data[i]), table[i].shared});
            const auto end = std::chrono::steady_clock::now();
            report->seconds = std::chrono::duration<double>(end - transfer_start).count();
            report->waited_seconds = std::chrono::duration<double>(transfer_start - start).count();
            return snapshot;
        } catch (const MeshError& e) {
            failures += "\n  node " + std::to_string(source.node) + " (" + source.address + "): " + e.what();
            log(PANGEA_LOG_WARN, "mesh", "node " + std::to_string(node) + ": fetching the state from node " +
                                             std::to_string(source.node) + " failed (" + e.what() + "); trying the next member");
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    }
}

}  // namespace pangea
