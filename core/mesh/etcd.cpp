#include "mesh/etcd.hpp"

#if PANGEA_HAVE_CURL
#include <curl/curl.h>
#endif
#include <openssl/evp.h>

#include <algorithm>

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
    if (padding > static_cast<size_t>(n)) return "";  // "====": not base64
    out.resize(static_cast<size_t>(n) - padding);
    return out;
}

// The answers are read by hand, not with std::regex: libstdc++'s regex recurses once per
// character a repetition takes, and a long field (50 KB) overflowed the stack.
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// The gateway's answers are small and regular; one field of them, by name: "name" : then a
// string (its text as it stands), true, false or an integer. The first occurrence that has one.
std::optional<std::string> json_field(const std::string& json, const std::string& name) {
    const std::string quoted = "\"" + name + "\"";
    for (size_t at = json.find(quoted); at != std::string::npos; at = json.find(quoted, at + 1)) {
        size_t i = at + quoted.size();
        while (i < json.size() && is_space(json[i])) ++i;
        if (i >= json.size() || json[i] != ':') continue;
        ++i;
        while (i < json.size() && is_space(json[i])) ++i;
        if (i < json.size() && json[i] == '"') {
            const size_t end = json.find('"', i + 1);
            if (end != std::string::npos) return json.substr(i + 1, end - i - 1);
        }
        for (const std::string word : {"true", "false"})
            if (json.compare(i, word.size(), word) == 0) return word;
        size_t j = i < json.size() && json[i] == '-' ? i + 1 : i;
        const size_t digits = j;
        while (j < json.size() && json[j] >= '0' && json[j] <= '9') ++j;
        if (j > digits) return json.substr(i, j - i);
    }
    return std::nullopt;
}

// A number of an answer (etcd writes 64-bit integers as strings); MeshError when it is not one.
int64_t number(const std::string& text, const char* name) {
    try {
        return std::stoll(text);
    } catch (const std::exception&) {  // std::invalid_argument, std::out_of_range
        throw MeshError(std::string("etcd answered a ") + name + " that is not a 64-bit integer: '" + text.substr(0, 40) + "'");
    }
}

// The end of the key range that holds exactly the keys starting with `prefix`.
std::string prefix_end(std::string prefix) {
    while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
    if (!prefix.empty()) prefix.back() = static_cast<char>(prefix.back() + 1);
    return prefix;
}

// The keys of a /v3/kv/range answer, and the store's revision at the time of the read.
std::vector<EtcdKey> range_keys(const std::string& answer, int64_t* revision) {
    *revision = number(json_field(answer, "revision").value_or("0"), "revision");
    std::vector<EtcdKey> keys;
    const std::string open = "{\"key\":\"";  // each key-value object: from this to the next '}'
    for (size_t at = answer.find(open), close; at != std::string::npos; at = answer.find(open, close + 1)) {
        if ((close = answer.find('}', at + open.size())) == std::string::npos) break;
        const std::string object = answer.substr(at, close + 1 - at);
        keys.push_back({unbase64(json_field(object, "key").value_or("")), unbase64(json_field(object, "value").value_or("")),
                        number(json_field(object, "create_revision").value_or("0"), "create_revision")});
    }
    return keys;
}

#if PANGEA_HAVE_CURL
size_t collect(char* data, size_t size, size_t count, void* out) {
    static_cast<std::string*>(out)->append(data, size * count);
    return size * count;
}
#endif

}  // namespace

#if PANGEA_HAVE_CURL
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
    if (status != 200 && response.find("requested lease not found") != std::string::npos)
        throw EtcdLeaseLost("etcd at " + endpoint_ + ": " + path + ": the lease has expired");
    if (status != 200)
        throw MeshError("etcd at " + endpoint_ + ": " + path + " answered HTTP " + std::to_string(status) + ": " +
                        response.substr(0, 200));
    return response;
}

#else
// Built without libcurl (optional, like the transports' libraries): the etcd backend says so.
struct EtcdClient::Curl {};

EtcdClient::EtcdClient(std::string endpoint, long timeout_ms) : endpoint_(std::move(endpoint)), timeout_ms_(timeout_ms) {
    throw MeshError("etcd at " + endpoint_ + ": this pangea was built without libcurl, which [mesh] backend = \"etcd\" "
                    "needs (Debian: libcurl4-openssl-dev; then build again)");
}

EtcdClient::~EtcdClient() = default;

std::string EtcdClient::call(const std::string& path, const std::string&) {
    throw MeshError("etcd at " + endpoint_ + ": " + path + ": built without libcurl");
}
#endif

int64_t EtcdClient::grant_lease(int ttl_seconds) {
    const std::string answer = call("/v3/lease/grant", "{\"TTL\":" + std::to_string(ttl_seconds) + "}");
    const auto id = json_field(answer, "ID");
    if (!id) throw MeshError("etcd at " + endpoint_ + ": the lease grant has no ID: " + answer.substr(0, 200));
    return number(*id, "lease ID");
}

bool EtcdClient::keep_alive(int64_t lease) {
    const std::string answer = call("/v3/lease/keepalive", "{\"ID\":" + std::to_string(lease) + "}");
    const auto ttl = json_field(answer, "TTL");
    return ttl && number(*ttl, "TTL") > 0;
}

void EtcdClient::revoke_lease(int64_t lease) { call("/v3/lease/revoke", "{\"ID\":" + std::to_string(lease) + "}"); }

std::optional<int64_t> EtcdClient::create(const std::string& key, const std::string& value, int64_t lease) {
    const std::string k = base64(key);
    const std::string answer =
        call("/v3/kv/txn", "{\"compare\":[{\"key\":\"" + k +
                               "\",\"result\":\"EQUAL\",\"target\":\"CREATE\",\"create_revision\":\"0\"}],"
                               "\"success\":[{\"request_put\":{\"key\":\"" + k + "\",\"value\":\"" + base64(value) +
                               "\",\"lease\":\"" + std::to_string(lease) + "\"}}]}");
    if (json_field(answer, "succeeded").value_or("false") != "true") return std::nullopt;
    return number(json_field(answer, "revision").value_or("0"), "revision");  // the transaction's: the key's creation
}

bool EtcdClient::put_if_created_at(const std::string& guard, int64_t guard_revision, const std::string& key,
                                   const std::string& value) {
    const std::string answer =
        call("/v3/kv/txn", "{\"compare\":[{\"key\":\"" + base64(guard) +
                               "\",\"result\":\"EQUAL\",\"target\":\"CREATE\",\"create_revision\":\"" +
                               std::to_string(guard_revision) + "\"}],\"success\":[{\"request_put\":{\"key\":\"" +
                               base64(key) + "\",\"value\":\"" + base64(value) + "\"}}]}");
    return json_field(answer, "succeeded").value_or("false") == "true";
}

std::optional<std::string> EtcdClient::get(const std::string& key) {
    const std::string answer = call("/v3/kv/range", "{\"key\":\"" + base64(key) + "\"}");
    const auto value = json_field(answer, "value");
    if (!value) return std::nullopt;
    return unbase64(*value);
}

std::vector<EtcdKey> EtcdClient::list(const std::string& prefix, int64_t* revision) {
    const std::string answer = call("/v3/kv/range", "{\"key\":\"" + base64(prefix) + "\",\"range_end\":\"" +
                                                        base64(prefix_end(prefix)) + "\"}");
    return range_keys(answer, revision);
}

namespace {

struct WatchStream {
    const std::function<void(const EtcdEvent&)>* on_event;
    const std::atomic<bool>* stop;
    std::string pending;  // an incomplete line
    int64_t revision = 0;
    std::string error;
};

// The gateway streams one JSON object per line: {"result":{"header":{...},"events":[...]}}.
size_t on_watch_data(char* data, size_t size, size_t count, void* user) {
    auto& stream = *static_cast<WatchStream*>(user);
    stream.pending.append(data, size * count);
    try {  // no exception may cross libcurl
        for (size_t end; (end = stream.pending.find('\n')) != std::string::npos; stream.pending.erase(0, end + 1)) {
            const std::string line = stream.pending.substr(0, end);
            if (line.find("\"error\"") != std::string::npos || line.find("\"canceled\":true") != std::string::npos) {
                stream.error = line.substr(0, 200);
                return 0;  // ends the transfer
            }
            // Each event: {"kv":{...}}, {"type":"PUT","kv":{...}} or {"type":"DELETE","kv":{...}}.
            for (size_t at = line.find('{'); at != std::string::npos; at = line.find('{', at + 1)) {
                size_t kv_at = at + 1;
                bool deleted = false;
                if (line.compare(kv_at, 13, "\"type\":\"PUT\",") == 0) kv_at += 13;
                else if (line.compare(kv_at, 16, "\"type\":\"DELETE\",") == 0) kv_at += 16, deleted = true;
                if (line.compare(kv_at, 6, "\"kv\":{") != 0) continue;
                const size_t close = line.find('}', kv_at + 6);
                if (close == std::string::npos) break;
                const std::string kv = line.substr(kv_at + 6, close - kv_at - 6);
                stream.revision =
                    std::max<int64_t>(stream.revision, number(json_field(kv, "mod_revision").value_or("0"), "mod_revision"));
                (*stream.on_event)({deleted, unbase64(json_field(kv, "key").value_or("")),
                                    unbase64(json_field(kv, "value").value_or(""))});
                at = close;
            }
        }
    } catch (const std::exception& e) {
        stream.error = e.what();
        return 0;
    }
    return size * count;
}

#if PANGEA_HAVE_CURL
int on_watch_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<WatchStream*>(user)->stop->load() ? 1 : 0;
}
#endif

}  // namespace

#if PANGEA_HAVE_CURL
int64_t EtcdClient::watch(const std::string& prefix, int64_t from_revision,
                          const std::function<void(const EtcdEvent&)>& on_event, const std::atomic<bool>& stop) {
    WatchStream stream{&on_event, &stop, "", from_revision - 1, ""};
    const std::string body = "{\"create_request\":{\"key\":\"" + base64(prefix) + "\",\"range_end\":\"" +
                             base64(prefix_end(prefix)) + "\",\"start_revision\":\"" + std::to_string(from_revision) +
                             "\"}}";
    const std::string url = endpoint_ + "/v3/watch";
    CURL* h = curl_->handle;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms_);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_watch_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &stream);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_watch_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &stream);
    const CURLcode rc = curl_easy_perform(h);
    if (!stream.error.empty()) throw MeshError("etcd at " + endpoint_ + ": the watch of " + prefix + " ended: " + stream.error);
    if (rc != CURLE_OK && !stop) throw MeshError("etcd at " + endpoint_ + ": /v3/watch: " + curl_easy_strerror(rc));
    return stream.revision;
}
#else
int64_t EtcdClient::watch(const std::string& prefix, int64_t, const std::function<void(const EtcdEvent&)>&,
                          const std::atomic<bool>&) {
    throw MeshError("etcd at " + endpoint_ + ": the watch of " + prefix + ": built without libcurl");
}
#endif

// ------------------------------------------------------------------ for tests/fuzz (etcd.hpp)

namespace etcd_detail {

std::optional<std::string> answer_field(const std::string& json, const std::string& name) { return json_field(json, name); }

std::string decode_base64(const std::string& text) { return unbase64(text); }

std::vector<EtcdKey> parse_range(const std::string& answer, int64_t* revision) { return range_keys(answer, revision); }

int64_t parse_watch(const std::vector<std::string>& chunks, int64_t from_revision,
                    const std::function<void(const EtcdEvent&)>& on_event, std::string* error) {
    const std::atomic<bool> stop{false};
    WatchStream stream{&on_event, &stop, "", from_revision - 1, ""};
    for (const std::string& chunk : chunks)  // as libcurl hands them over, until one is refused
        if (on_watch_data(const_cast<char*>(chunk.data()), 1, chunk.size(), &stream) != chunk.size()) break;
    *error = stream.error;
    return stream.revision;
}

}  // namespace etcd_detail

}  // namespace pangea
