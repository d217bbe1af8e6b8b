#include "membership/etcd.hpp"

#if PANGEA_HAVE_CURL
#include <curl/curl.h>
#endif
#include <openssl/evp.h>

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/json.hpp"
#include "common/log.hpp"
#include "manifest/manifest.hpp"
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
    for (const Json& kv : kvs)
        keys.push_back({bytes(kv, "key"), bytes(kv, "value"), integer(kv, "create_revision"), integer(kv, "lease")});
    return keys;
}

#if PANGEA_HAVE_CURL
size_t collect(char* data, size_t size, size_t count, void* out) {
    static_cast<std::string*>(out)->append(data, size * count);
    return size * count;
}

// Errors after which the request cannot have reached etcd: the next endpoint may take it.
bool never_sent(CURLcode rc) {
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY;
}
#endif

std::vector<std::string> split_endpoints(const std::string& list) {
    std::vector<std::string> endpoints;
    std::istringstream in(list);
    for (std::string endpoint; std::getline(in, endpoint, ',');) {
        endpoint.erase(0, endpoint.find_first_not_of(" \t"));
        endpoint.erase(endpoint.find_last_not_of(" \t/") + 1);
        if (!endpoint.empty()) endpoints.push_back(endpoint);
    }
    if (endpoints.empty()) throw MeshError("etcd: no endpoint given (\"" + list + "\")");
    return endpoints;
}

bool contains(const std::string& text, const char* part) { return text.find(part) != std::string::npos; }

// A file a setting names, whole; `what` names the setting.
std::string read_setting_file(const std::string& path, const std::string& what) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(what + " " + path + " cannot be read");
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

EtcdAccess etcd_access(const Manifest& m) {
    const auto origin = [&](const char* key) { return m.core.at("mesh").at(key).origin + ": [mesh] " + key; };
    EtcdAccess access;
    access.endpoints = m.get_string("mesh", "etcd");
    access.ca_file = m.get_string("mesh", "etcd_ca_file");
    access.cert_file = m.get_string("mesh", "etcd_cert_file");
    access.key_file = m.get_string("mesh", "etcd_key_file");
    access.user = m.get_string("mesh", "etcd_user");
    for (const char* key : {"etcd_ca_file", "etcd_cert_file", "etcd_key_file"})
        if (const std::string file = m.get_string("mesh", key); !file.empty()) read_setting_file(file, origin(key));
    if (access.cert_file.empty() != access.key_file.empty())
        throw std::runtime_error(origin(access.cert_file.empty() ? "etcd_key_file" : "etcd_cert_file") +
                                 " is set without [mesh] " + (access.cert_file.empty() ? "etcd_cert_file" : "etcd_key_file") +
                                 ": a client certificate needs both");
    const bool tls = !access.ca_file.empty() || !access.cert_file.empty();
    for (const std::string& endpoint : split_endpoints(access.endpoints))
        if (tls && endpoint.rfind("https://", 0) != 0)
            throw std::runtime_error(origin("etcd") + " has " + endpoint +
                                     ", which is not https://, while TLS files are set ([mesh] etcd_ca_file, "
                                     "etcd_cert_file): give etcd's https:// URL");
    const std::string password_file = m.get_string("mesh", "etcd_password_file");
    if (access.user.empty() != password_file.empty())
        throw std::runtime_error(origin(access.user.empty() ? "etcd_password_file" : "etcd_user") + " is set without [mesh] " +
                                 (access.user.empty() ? "etcd_user" : "etcd_password_file") + ": etcd's auth needs both");
    if (!password_file.empty()) {
        access.password = read_setting_file(password_file, origin("etcd_password_file"));
        while (!access.password.empty() && (access.password.back() == '\n' || access.password.back() == '\r'))
            access.password.pop_back();
        struct stat info {};
        if (stat(password_file.c_str(), &info) == 0 && (info.st_mode & (S_IRGRP | S_IROTH)))
            log(PANGEA_LOG_WARN, "mesh", origin("etcd_password_file") + " " + password_file +
                                             " can be read by other users; chmod 600 it");
    }
    return access;
}

#if PANGEA_HAVE_CURL
struct EtcdClient::Curl {
    CURL* handle = curl_easy_init();
    curl_slist* headers = nullptr;
    char error[CURL_ERROR_SIZE] = {};
    ~Curl() {
        curl_slist_free_all(headers);
        curl_easy_cleanup(handle);
    }
    // The handle set up for a POST of `body` (which must outlive the transfer) to `url`.
    CURL* prepare(const std::string& url, const std::string& body, const EtcdAccess& access, const std::string& token) {
        curl_easy_reset(handle);
        curl_slist_free_all(headers);
        headers = nullptr;
        if (!token.empty()) headers = curl_slist_append(headers, ("Authorization: " + token).c_str());
        error[0] = '\0';
        curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
        curl_easy_setopt(handle, CURLOPT_POSTFIELDS, body.c_str());
        curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error);
        curl_easy_setopt(handle, CURLOPT_HTTPHEADER, headers);
        if (!access.ca_file.empty()) curl_easy_setopt(handle, CURLOPT_CAINFO, access.ca_file.c_str());
        if (!access.cert_file.empty()) {
            curl_easy_setopt(handle, CURLOPT_SSLCERT, access.cert_file.c_str());
            curl_easy_setopt(handle, CURLOPT_SSLKEY, access.key_file.c_str());
        }
        return handle;
    }
    // Why a transfer failed, with a hint for the TLS failures a setting fixes.
    std::string failure(CURLcode rc, const EtcdAccess& access) const {
        std::string why = error[0] != '\0' ? error : curl_easy_strerror(rc);
        if (rc == CURLE_PEER_FAILED_VERIFICATION)
            why += access.ca_file.empty() ? " (set [mesh] etcd_ca_file to the CA that signed etcd's certificate)"
                                          : " (is [mesh] etcd_ca_file " + access.ca_file + " the CA that signed etcd's certificate?)";
        else if (rc == CURLE_SSL_CERTPROBLEM)
            why += " ([mesh] etcd_cert_file " + access.cert_file + ", etcd_key_file " + access.key_file + ")";
        else if ((rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR) && access.cert_file.empty())
            why += " (does etcd ask for a client certificate? set [mesh] etcd_cert_file and etcd_key_file)";
        return why;
    }
};

EtcdClient::EtcdClient(EtcdAccess access, long timeout_ms)
    : access_(std::move(access)), endpoints_(split_endpoints(access_.endpoints)), timeout_ms_(timeout_ms),
      curl_(std::make_unique<Curl>()) {
    static const bool initialized = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    if (!initialized || curl_->handle == nullptr) throw MeshError("etcd: libcurl could not be initialized");
}

EtcdClient::~EtcdClient() = default;

EtcdClient::Answer EtcdClient::post(const std::string& path, const std::string& body) {
    std::string failures;
    for (size_t tried = 0; tried < endpoints_.size(); ++tried) {
        Answer answer;
        CURL* h = curl_->prepare(endpoint() + path, body, access_, token_);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms_);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer.body);
        const CURLcode rc = curl_easy_perform(h);
        if (rc == CURLE_OK) {
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &answer.status);
            return answer;
        }
        const std::string why = "etcd at " + endpoint() + ": " + path + ": " + curl_->failure(rc, access_);
        if (!never_sent(rc)) throw MeshError(why);
        failures += (failures.empty() ? "" : "; ") + why;
        current_ = (current_ + 1) % endpoints_.size();
    }
    throw MeshError(failures);
}

void EtcdClient::authenticate() {
    token_.clear();
    const Answer answer = post("/v3/auth/authenticate", to_json(Json{{"name", access_.user}, {"password", access_.password}}));
    if (answer.status != 200) throw MeshError(describe_refusal("/v3/auth/authenticate", answer));
    token_ = json_string(parse_answer(answer.body, "/v3/auth/authenticate"), "token").value_or("");
    if (token_.empty()) throw MeshError("etcd at " + endpoint() + ": /v3/auth/authenticate gave no token: " + answer.body.substr(0, 200));
}

std::string EtcdClient::call(const std::string& path, const std::string& body) {
    if (token_.empty() && !access_.user.empty()) authenticate();
    Answer answer = post(path, body);
    if (answer.status != 200 && !access_.user.empty() && contains(answer.body, "invalid auth token")) {
        authenticate();  // the token expired (etcd --auth-token-ttl), or etcd restarted
        answer = post(path, body);
    }
    if (answer.status != 200 && contains(answer.body, "requested lease not found"))
        throw EtcdLeaseLost("etcd at " + endpoint() + ": " + path + ": the lease has expired");
    if (answer.status != 200) throw MeshError(describe_refusal(path, answer));
    return answer.body;
}

#else
// Built without libcurl (optional, like the transports' libraries): the etcd backend says so.
struct EtcdClient::Curl {};

EtcdClient::EtcdClient(EtcdAccess access, long timeout_ms)
    : access_(std::move(access)), endpoints_(split_endpoints(access_.endpoints)), timeout_ms_(timeout_ms) {
    throw MeshError("etcd at " + endpoint() + ": this pangea was built without libcurl, which [mesh] backend = \"etcd\" "
                    "needs (Debian: libcurl4-openssl-dev; then build again)");
}

EtcdClient::~EtcdClient() = default;

EtcdClient::Answer EtcdClient::post(const std::string& path, const std::string&) {
    throw MeshError("etcd at " + endpoint() + ": " + path + ": built without libcurl");
}

void EtcdClient::authenticate() {}

std::string EtcdClient::call(const std::string& path, const std::string& body) { return post(path, body).body; }
#endif

std::string EtcdClient::describe_refusal(const std::string& path, const Answer& answer) const {
    std::string why = "etcd at " + endpoint() + ": " + path + " answered HTTP " + std::to_string(answer.status) + ": " +
                      answer.body.substr(0, 200);
    if (contains(answer.body, "user name is empty") || contains(answer.body, "user name not found"))
        why += access_.user.empty() ? " (etcd's auth is on: set [mesh] etcd_user and etcd_password_file)"
                                    : " (is [mesh] etcd_user '" + access_.user + "' one of etcd's users?)";
    else if (contains(answer.body, "authentication failed"))
        why += " (etcd refused user '" + access_.user + "' with the password of [mesh] etcd_password_file)";
    else if (contains(answer.body, "CommonName of client sending a request against gateway"))
        why += " (etcd's JSON gateway does not take a client certificate together with auth: with etcd_user set, "
               "leave [mesh] etcd_cert_file and etcd_key_file empty and run etcd without --client-cert-auth)";
    else if (contains(answer.body, "permission denied"))
        why += " (etcd user '" + access_.user + "' needs a role that may read and write the keys under /pangea/)";
    return why;
}

int64_t EtcdClient::grant_lease(int ttl_seconds) {
    const std::string text = call("/v3/lease/grant", to_json(Json{{"TTL", ttl_seconds}}));
    const Json answer = parse_answer(text, "/v3/lease/grant");
    if (!answer.contains("ID")) throw MeshError("etcd at " + endpoint() + ": the lease grant has no ID: " + text.substr(0, 200));
    return integer(answer, "ID");
}

bool EtcdClient::keep_alive(int64_t lease) {
    // A stream of one answer: {"result":{"ID":...,"TTL":...}} (no TTL once the lease expired).
    const std::string text = call("/v3/lease/keepalive", to_json(Json{{"ID", lease}}));
    return integer(member(parse_answer(text.substr(0, text.find('\n')), "/v3/lease/keepalive"), "result"), "TTL") > 0;
}

void EtcdClient::revoke_lease(int64_t lease) { call("/v3/lease/revoke", to_json(Json{{"ID", lease}})); }

int64_t EtcdClient::time_to_live(int64_t lease) {
    const std::string text = call("/v3/lease/timetolive", to_json(Json{{"ID", lease}}));
    return integer(parse_answer(text, "/v3/lease/timetolive"), "TTL");
}

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

int64_t EtcdClient::remove_prefix(const std::string& prefix) {
    const std::string text =
        call("/v3/kv/deleterange", to_json(Json{{"key", base64(prefix)}, {"range_end", base64(prefix_end(prefix))}}));
    return integer(parse_answer(text, "/v3/kv/deleterange"), "deleted");
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
    if (token_.empty() && !access_.user.empty()) authenticate();
    CURL* h = curl_->prepare(endpoint() + "/v3/watch", body, access_, token_);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms_);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_watch_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &stream);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_watch_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &stream);
    const CURLcode rc = curl_easy_perform(h);
    if (!stream.error.empty()) {
        if (contains(stream.error, "invalid auth token")) token_.clear();  // the next watch logs in again
        throw MeshError("etcd at " + endpoint() + ": the watch of " + prefix + " ended: " + stream.error);
    }
    if (rc != CURLE_OK && !stop) {
        const std::string why = "etcd at " + endpoint() + ": /v3/watch: " + curl_->failure(rc, access_);
        if (never_sent(rc)) current_ = (current_ + 1) % endpoints_.size();  // the next watch tries another
        throw MeshError(why);
    }
    return stream.revision;
}
#else
int64_t EtcdClient::watch(const std::string& prefix, int64_t, const std::function<void(const EtcdEvent&)>&,
                          const std::atomic<bool>&) {
    throw MeshError("etcd at " + endpoint() + ": the watch of " + prefix + ": built without libcurl");
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
