#include "mesh/etcd.hpp"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <regex>

#include "mesh/ring_setup.hpp"

namespace pangea {
namespace {

std::string base64(const std::string& in) {
    std::string out(4 * ((in.size() + 2) / 3), '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    out.resize(static_cast<size_t>(n));
    return out;
}

std::string unbase64(const std::string& in) {
    std::string out(3 * in.size() / 4 + 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    if (n < 0) return "";
    size_t padding = 0;
    for (size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) ++padding;
    out.resize(static_cast<size_t>(n) - padding);
    return out;
}

// The gateway's answers are small and regular; one field of them, by name.
std::optional<std::string> json_field(const std::string& json, const std::string& name) {
    const std::regex pattern("\"" + name + "\"\\s*:\\s*(\"([^\"]*)\"|true|false|-?[0-9]+)");
    std::smatch match;
    if (!std::regex_search(json, match, pattern)) return std::nullopt;
    return match[2].matched ? match[2].str() : match[1].str();
}

size_t collect(char* data, size_t size, size_t count, void* out) {
    static_cast<std::string*>(out)->append(data, size * count);
    return size * count;
}

}  // namespace

struct EtcdClient::Curl {
    CURL* handle = curl_easy_init();
    ~Curl() { curl_easy_cleanup(handle); }
};

EtcdClient::EtcdClient(std::string endpoint, long timeout_ms)
    : endpoint_(std::move(endpoint)), timeout_ms_(timeout_ms), curl_(std::make_unique<Curl>()) {
    static const bool initialized = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    if (!initialized || curl_->handle == nullptr) throw MeshError("etcd: libcurl could not be initialized");
}

EtcdClient::~EtcdClient() = default;

std::string EtcdClient::call(const std::string& path, const std::string& body) {
    std::string response;
    CURL* h = curl_->handle;
    curl_easy_reset(h);
    const std::string url = endpoint_ + path;
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms_);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &response);
    if (const CURLcode rc = curl_easy_perform(h); rc != CURLE_OK)
        throw MeshError("etcd at " + endpoint_ + ": " + path + ": " + curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        throw MeshError("etcd at " + endpoint_ + ": " + path + " answered HTTP " + std::to_string(status) + ": " +
                        response.substr(0, 200));
    return response;
}

int64_t EtcdClient::grant_lease(int ttl_seconds) {
    const std::string answer = call("/v3/lease/grant", "{\"TTL\":" + std::to_string(ttl_seconds) + "}");
    const auto id = json_field(answer, "ID");
    if (!id) throw MeshError("etcd at " + endpoint_ + ": the lease grant has no ID: " + answer.substr(0, 200));
    return std::stoll(*id);
}

bool EtcdClient::keep_alive(int64_t lease) {
    const std::string answer = call("/v3/lease/keepalive", "{\"ID\":" + std::to_string(lease) + "}");
    const auto ttl = json_field(answer, "TTL");
    return ttl && std::stoll(*ttl) > 0;
}

void EtcdClient::revoke_lease(int64_t lease) { call("/v3/lease/revoke", "{\"ID\":" + std::to_string(lease) + "}"); }

bool EtcdClient::create(const std::string& key, const std::string& value, int64_t lease) {
    const std::string k = base64(key);
    const std::string answer =
        call("/v3/kv/txn", "{\"compare\":[{\"key\":\"" + k +
                               "\",\"result\":\"EQUAL\",\"target\":\"CREATE\",\"create_revision\":\"0\"}],"
                               "\"success\":[{\"request_put\":{\"key\":\"" + k + "\",\"value\":\"" + base64(value) +
                               "\",\"lease\":\"" + std::to_string(lease) + "\"}}]}");
    return json_field(answer, "succeeded").value_or("false") == "true";
}

std::optional<std::string> EtcdClient::get(const std::string& key) {
    const std::string answer = call("/v3/kv/range", "{\"key\":\"" + base64(key) + "\"}");
    const auto value = json_field(answer, "value");
    if (!value) return std::nullopt;
    return unbase64(*value);
}

}  // namespace pangea
