// A small etcd v3 client over its JSON gateway (HTTP or HTTPS, libcurl): leases, transactions,
// ranges and watches, what the etcd membership backend needs. Keys and values are base64 on the
// wire. TLS (a CA, a client certificate) and etcd's own users (a password exchanged for a token)
// as etcd's security guide sets them up; several endpoints of one cluster are tried in turn.
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

class Manifest;

// How to reach etcd, and as whom.
struct EtcdAccess {
    std::string endpoints;  // "http(s)://host:port", several of one cluster separated by commas
    std::string ca_file;    // PEM: the CA that signed etcd's certificate (else the system's CAs)
    std::string cert_file;  // PEM: this client's certificate, for etcd --client-cert-auth
    std::string key_file;   // and its key
    std::string user;       // etcd with auth enabled (etcdctl auth enable): the user, and its password
    std::string password;
};

// From [mesh] etcd, etcd_ca_file, etcd_cert_file, etcd_key_file, etcd_user, etcd_password_file.
// Throws std::runtime_error naming the setting for an unreadable file or a half-given pair.
EtcdAccess etcd_access(const Manifest& manifest);

struct EtcdKey {
    std::string key;
    std::string value;
    int64_t create_revision = 0;
    int64_t lease = 0;  // 0: none
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
// the endpoint and the call when no endpoint can be reached or etcd answers with an error
// (EtcdLeaseLost when the error is that the lease is gone). An endpoint that cannot be reached
// hands the call to the next; an expired auth token is renewed and the call made again.
class EtcdClient {
public:
    // Calls time out after `timeout_ms` (watches do not).
    explicit EtcdClient(EtcdAccess access, long timeout_ms = 3000);
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
    // Deletes every key under `prefix`; returns how many there were.
    int64_t remove_prefix(const std::string& prefix);
    // Seconds `lease` has left (-1: it has expired).
    int64_t time_to_live(int64_t lease);

    // Streams the changes under `prefix` from `from_revision` on, calling `on_event` for each,
    // until `stop` turns true (within about a second) or the stream ends. Returns the last
    // revision seen, from which a new watch carries on.
    int64_t watch(const std::string& prefix, int64_t from_revision, const std::function<void(const EtcdEvent&)>& on_event,
                  const std::atomic<bool>& stop);

    const std::string& endpoint() const { return endpoints_[current_]; }  // the one in use

private:
    std::string call(const std::string& path, const std::string& body);
    struct Answer {
        long status = 0;
        std::string body;
    };
    // One POST to the endpoint in use, with TLS and the auth token set; MeshError when it
    // cannot be reached.
    Answer post(const std::string& path, const std::string& body);
    void authenticate();  // exchanges the user's password for a token
    std::string describe_refusal(const std::string& path, const Answer& answer) const;
    EtcdAccess access_;
    std::vector<std::string> endpoints_;
    size_t current_ = 0;
    std::string token_;
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
