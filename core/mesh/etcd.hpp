// A small etcd v3 client over its JSON gateway (HTTP, libcurl): leases and create-if-absent
// transactions, what the etcd membership backend needs. Keys and values are base64 on the wire.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace pangea {

class EtcdClient {
public:
    // `endpoint`: "http://host:port". Calls time out after `timeout_ms`.
    explicit EtcdClient(std::string endpoint, long timeout_ms = 3000);
    ~EtcdClient();
    EtcdClient(const EtcdClient&) = delete;
    EtcdClient& operator=(const EtcdClient&) = delete;

    // Each throws MeshError naming the endpoint and the call when etcd cannot be reached or
    // answers with an error.
    int64_t grant_lease(int ttl_seconds);
    bool keep_alive(int64_t lease);  // false once the lease has expired
    void revoke_lease(int64_t lease);
    // Puts key = value (attached to `lease`) only if the key does not exist; true if it was put.
    bool create(const std::string& key, const std::string& value, int64_t lease);
    std::optional<std::string> get(const std::string& key);

private:
    std::string call(const std::string& path, const std::string& body);
    std::string endpoint_;
    long timeout_ms_;
    struct Curl;
    std::unique_ptr<Curl> curl_;
};

}  // namespace pangea
