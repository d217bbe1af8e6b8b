#include "membership/etcd.hpp"

#if PANGEA_HAVE_CURL
#include <curl/curl.h>
#endif
#include <openssl/evp.h>

#include <algorithm>
#include <charconv>

#include "common/json.hpp"
#include "topology/ring_setup.hpp"

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

// An answer of the gateway (untrusted: etcd is reached over plain HTTP); MeshError when it is
// not JSON.
Json parse_answer(const std::string& answer, const std::string& call) {
    try {
        return parse_json(answer);
    } catch (const JsonError& e) {
        throw MeshError("etcd answered " + call + " with text that is not JSON (" + e.what() + "): " + answer.substr(0, 200));
    }
}

// A 64-bit integer of an answer: etcd writes them as strings ("revision":"12"), and leaves out
// the ones that are 0. MeshError when it is neither a number nor a string of one.
int64_t integer(const Json& object, const char* key) {
    if (!object.is_object() || !object.contains(key)) return 0;
    if (const auto n = json_int(object, key)) return *n;
    const std::string text = json_string(object, key).value_or(to_json(object.at(key)));
    int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size())
        throw MeshError(std::string("etcd answered a ") + key + " that is not a 64-bit integer: '" + text.substr(0, 40) + "'");
    return value;
}

// A member object of an answer (null when absent).
const Json& member(const Json& object, const char* key) {
    static const Json kNull;
    if (!object.is_object()) return kNull;
    const auto found = object.find(key);
    return found == object.end() ? kNull : *found;
}

// A base64 key or value of an answer, decoded.
std::string bytes(const Json& object, const char* key) { return unbase64(json_string(object, key).value_or("")); }

int64_t header_revision(const Json& answer) { return integer(member(answer, "header"), "revision"); }

// The end of the key range that holds exactly the keys starting with `prefix`.
std::string prefix_end(std::string prefix) {
    while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
    if (!prefix.empty()) prefix.back() = static_cast<char>(prefix.back() + 1);
    return prefix;
}

// The keys of a /v3/kv/range answer, and the store's revision at the time of the read.
std::vector<EtcdKey> range_keys(const std::string& text, int64_t* revision) {
    const Json answer = parse_answer(text, "/v3/kv/range");
    *revision = header_revision(answer);
    std::vector<EtcdKey> keys;
    const Json& kvs = member(answer, "kvs");
    if (!kvs.is_array()) return keys;  // none: left out
    for (const Json& kv : kvs) keys.push_back({bytes(kv, "key"), bytes(kv, "value"), integer(kv, "create_revision")});
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
    const std::string text = call("/v3/lease/grant", to_json(Json{{"TTL", ttl_seconds}}));
    const Json answer = parse_answer(text, "/v3/lease/grant");
    if (!answer.contains("ID")) throw MeshError("etcd at " + endpoint_ + ": the lease grant has no ID: " + text.substr(0, 200));
    return integer(answer, "ID");
}

bool EtcdClient::keep_alive(int64_t lease) {
    // A stream of one answer: {"result":{"ID":...,"TTL":...}} (no TTL once the lease expired).
    const std::string text = call("/v3/lease/keepalive", to_json(Json{{"ID", lease}}));
    return integer(member(parse_answer(text.substr(0, text.find('\n')), "/v3/lease/keepalive"), "result"), "TTL") > 0;
}

void EtcdClient::revoke_lease(int64_t lease) { call("/v3/lease/revoke", to_json(Json{{"ID", lease}})); }

std::optional<int64_t> EtcdClient::create(const std::string& key, const std::string& value, int64_t lease) {
    const Json request{
        {"compare", {{{"key", base64(key)}, {"result", "EQUAL"}, {"target", "CREATE"}, {"create_revision", "0"}}}},
        {"success", {{{"request_put", {{"key", base64(key)}, {"value", base64(value)}, {"lease", std::to_string(lease)}}}}}}};
    const Json answer = parse_answer(call("/v3/kv/txn", to_json(request)), "/v3/kv/txn");
    if (!json_bool(answer, "succeeded").value_or(false)) return std::nullopt;
    return header_revision(answer);  // the transaction's: the key's creation
}

bool EtcdClient::put_if_created_at(const std::string& guard, int64_t guard_revision, const std::string& key,
                                   const std::string& value) {
    const Json request{{"compare",
                        {{{"key", base64(guard)},
                          {"result", "EQUAL"},
                          {"target", "CREATE"},
                          {"create_revision", std::to_string(guard_revision)}}}},
                       {"success", {{{"request_put", {{"key", base64(key)}, {"value", base64(value)}}}}}}};
    const Json answer = parse_answer(call("/v3/kv/txn", to_json(request)), "/v3/kv/txn");
    return json_bool(answer, "succeeded").value_or(false);
}

std::optional<std::string> EtcdClient::get(const std::string& key) {
    const Json answer = parse_answer(call("/v3/kv/range", to_json(Json{{"key", base64(key)}})), "/v3/kv/range");
    const Json& kvs = member(answer, "kvs");
    if (!kvs.is_array() || kvs.empty()) return std::nullopt;
    return bytes(kvs[0], "value");
}

std::vector<EtcdKey> EtcdClient::list(const std::string& prefix, int64_t* revision) {
    return range_keys(call("/v3/kv/range", to_json(Json{{"key", base64(prefix)}, {"range_end", base64(prefix_end(prefix))}})),
                      revision);
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
            if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
            Json message;
            try {
                message = parse_json(line);
            } catch (const JsonError& e) {
                stream.error = std::string("a line that is not JSON (") + e.what() + "): " + line.substr(0, 200);
                return 0;  // ends the transfer
            }
            const Json& result = member(message, "result");
            if (message.contains("error") || json_bool(result, "canceled").value_or(false)) {
                stream.error = line.substr(0, 200);
                return 0;
            }
            // Each event: {"kv":{...}} (a put: etcd leaves the default type out) or {"type":"DELETE","kv":{...}}.
            const Json& events = member(result, "events");
            if (!events.is_array()) continue;
            for (const Json& event : events) {
                const Json& kv = member(event, "kv");
                stream.revision = std::max(stream.revision, integer(kv, "mod_revision"));
                (*stream.on_event)({json_string(event, "type") == "DELETE", bytes(kv, "key"), bytes(kv, "value")});
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
    const std::string body = to_json(Json{{"create_request",
                                           {{"key", base64(prefix)},
                                            {"range_end", base64(prefix_end(prefix))},
                                            {"start_revision", std::to_string(from_revision)}}}});
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

std::string encode_base64(const std::string& bytes) { return base64(bytes); }

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
