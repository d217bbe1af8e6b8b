// A small etcd v3 client over its JSON gateway (HTTP, libcurl): leases, transactions, ranges and
// watches, what the etcd membership backend needs. Keys and values are base64 on the wire.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "topology/ring_setup.hpp"  // MeshError

namespace pangea {

struct EtcdKey {
    std::string key;
    std::string value;
    int64_t create_revision = 0;
};

struct EtcdEvent {
    bool deleted = false;  // else put
    std::string key;
    std::string value;  // with a put
};

// etcd no longer knows the lease a call used (it expired while this process was stopped).
class EtcdLeaseLost : public MeshError {
public:
    using MeshError::MeshError;
};

// One client per thread (a libcurl handle is one thread's). Each call throws MeshError naming
// the endpoint and the call when etcd cannot be reached or answers with an error
// (EtcdLeaseLost when the error is that the lease is gone).
class EtcdClient {
public:
    // `endpoint`: "http://host:port". Calls time out after `timeout_ms` (watches do not).
    explicit EtcdClient(std::string endpoint, long timeout_ms = 3000);
    ~EtcdClient();
    EtcdClient(const EtcdClient&) = delete;
    EtcdClient& operator=(const EtcdClient&) = delete;

    int64_t grant_lease(int ttl_seconds);
    bool keep_alive(int64_t lease);  // false once the lease has expired
    void revoke_lease(int64_t lease);

    // Puts key = value (attached to `lease`) only if the key does not exist. Returns the key's
    // create revision when it was put (a fencing token: see put_if_created_at).
    std::optional<int64_t> create(const std::string& key, const std::string& value, int64_t lease);
    // Puts key = value in one transaction with a check that `guard` still is the key created at
    // `guard_revision`; false (and nothing written) when it is not.
    bool put_if_created_at(const std::string& guard, int64_t guard_revision, const std::string& key,
                           const std::string& value);
    std::optional<std::string> get(const std::string& key);
    // Every key under `prefix`, and the store's revision at the time of the read.
    std::vector<EtcdKey> list(const std::string& prefix, int64_t* revision);

    // Streams the changes under `prefix` from `from_revision` on, calling `on_event` for each,
    // until `stop` turns true (within about a second) or the stream ends. Returns the last
    // revision seen, from which a new watch carries on.
    int64_t watch(const std::string& prefix, int64_t from_revision, const std::function<void(const EtcdEvent&)>& on_event,
                  const std::atomic<bool>& stop);

private:
    std::string call(const std::string& path, const std::string& body);
    std::string endpoint_;
    long timeout_ms_;
    struct Curl;
    std::unique_ptr<Curl> curl_;
};

// How the client reads etcd's answers, without a connection (tests/fuzz/etcd_fuzz.cpp): base64,
// the keys of a range answer (and the revision; MeshError when it is not one), and the events of
// a watch stream handed over in `chunks` as libcurl would (*error: why the stream ended, or "").
namespace etcd_detail {
std::string encode_base64(const std::string& bytes);
std::string decode_base64(const std::string& text);
std::vector<EtcdKey> parse_range(const std::string& answer, int64_t* revision);
int64_t parse_watch(const std::vector<std::string>& chunks, int64_t from_revision,
                    const std::function<void(const EtcdEvent&)>& on_event, std::string* error);
}  // namespace etcd_detail

}  // namespace pangea
