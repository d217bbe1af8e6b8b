// storage/s3: checkpoint objects in a bucket of any S3-compatible store (AWS S3, MinIO, Ceph RGW,
// s3rver...). libcurl sends the requests and signs them with AWS SigV4 (CURLOPT_AWS_SIGV4).
// A small object goes up with one PUT; a larger one as a multipart upload whose parts are sent
// by background threads while the caller keeps writing. S3 shows an object only once its PUT or
// CompleteMultipartUpload succeeds, so a failed or aborted write leaves nothing visible.
#include <curl/curl.h>
#include <openssl/evp.h>
#include <pugixml.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "pangea/sdk.hpp"

// One object being written. Parts in flight own their bytes, so the buffer holds at most one
// part: memory stays under (parallel_parts + 1) * part_mib whatever the object's size.
struct pangea_storage_writer {
    std::string key;                                 // the S3 key, prefix included
    std::vector<char> buffer;                        // bytes not sent yet
    std::string upload_id;                           // set once a multipart upload has started
    std::vector<std::string> etags;                  // of the parts done, in part order
    std::deque<std::future<std::string>> in_flight;  // parts being sent (ETag), oldest first
};

namespace {

using pangea::sdk::Error;

constexpr int kMaxParts = 10000;        // S3's limit per multipart upload
constexpr size_t kMaxKeyBytes = 1024;   // S3's limit on a key
constexpr size_t kMaxAnswer = 32 << 20;  // XML answers: a page of 1000 keys is under 2 MiB
constexpr size_t kMaxIdleHandles = 64;
constexpr const char* kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// ------------------------------------------------------------------ small helpers

struct CurlDeleter {
    void operator()(CURL* handle) const noexcept { curl_easy_cleanup(handle); }
};
using CurlHandle = std::unique_ptr<CURL, CurlDeleter>;

struct SlistDeleter {
    void operator()(curl_slist* list) const noexcept { curl_slist_free_all(list); }
};
using HeaderList = std::unique_ptr<curl_slist, SlistDeleter>;

void append_header(HeaderList& list, const std::string& line) {
    curl_slist* grown = curl_slist_append(list.get(), line.c_str());
    if (grown == nullptr) throw std::bad_alloc();
    (void)list.release();  // grown is the same list (or the first node of a new one)
    list.reset(grown);
}

void curl_global_once() {
    static std::once_flag once;
    static CURLcode result = CURLE_OK;
    // curl_global_init is not thread-safe; it stays initialized for the process (no cleanup:
    // another user of libcurl in the process may still need it).
    std::call_once(once, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (result != CURLE_OK)
        throw Error(PANGEA_ERR_INTERNAL, std::string("s3: curl_global_init failed: ") + curl_easy_strerror(result));
}

bool starts_with_ci(std::string_view text, std::string_view prefix) {
    if (text.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(text[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
            return false;
    return true;
}

std::string trim(std::string_view text) {
    const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!text.empty() && space(text.front())) text.remove_prefix(1);
    while (!text.empty() && space(text.back())) text.remove_suffix(1);
    return std::string(text);
}

// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters kept, everything else %XX.
// curl 7.88 copies path and query into the canonical request verbatim, so what we send must
// already be in canonical form.
std::string uri_encode(std::string_view text, bool keep_slash) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size() * 3);
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                c == '-' || c == '_' || c == '.' || c == '~';
        if (unreserved || (keep_slash && c == '/')) {
            out += ch;
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

// A query string in SigV4 canonical order: sorted by key, every key and value encoded, and
// "key=" for an empty value.
std::string query_string(std::vector<std::pair<std::string, std::string>> params) {
    if (params.empty()) return "";
    std::sort(params.begin(), params.end());
    std::string out;
    for (const auto& [key, value] : params)
        out += (out.empty() ? "?" : "&") + uri_encode(key, false) + "=" + uri_encode(value, false);
    return out;
}

std::string sha256_hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(data.empty() ? "" : data.data(), data.size(), digest, &length, EVP_sha256(), nullptr) != 1)
        throw Error(PANGEA_ERR_INTERNAL, "s3: SHA-256 failed (OpenSSL)");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < length; ++i) {
        out += kHex[digest[i] >> 4];
        out += kHex[digest[i] & 15];
    }
    return out;
}

// S3's answers are XML. One that is not (an HTML page from a proxy, a cut answer) reads as far as
// it parses: pugixml keeps what it read before the error, and what is missing reads as "".
struct Xml {
    pugi::xml_document doc;
    explicit Xml(std::string_view text) {
        // Without parse_eol: a carriage return in a key (S3 writes it as &#13;) stays one.
        (void)doc.load_buffer(text.data(), text.size(), pugi::parse_default & ~pugi::parse_eol, pugi::encoding_utf8);
    }
    pugi::xml_node root() const { return doc.document_element(); }
    // The text of the first element named `tag` anywhere in the answer, or "".
    std::string first(const char* tag) const {
        return doc.find_node([&](const pugi::xml_node& n) { return std::strcmp(n.name(), tag) == 0; }).child_value();
    }
};

// ------------------------------------------------------------------ credentials

struct Credentials {
    std::string key_id, secret, session_token;
    std::string source;  // where they came from, for error messages
};

std::string env(const char* name) {
    const char* value = std::getenv(name);
    return value == nullptr ? "" : value;
}

Credentials load_credentials(const std::string& profile) {
    Credentials found;
    found.key_id = env("AWS_ACCESS_KEY_ID");
    found.secret = env("AWS_SECRET_ACCESS_KEY");
    if (!found.key_id.empty() && !found.secret.empty()) {
        found.session_token = env("AWS_SESSION_TOKEN");
        found.source = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment";
        return found;
    }
    std::string path = env("AWS_SHARED_CREDENTIALS_FILE");
    if (path.empty()) path = env("HOME").empty() ? "~/.aws/credentials" : env("HOME") + "/.aws/credentials";
    const std::string looked = "s3: no credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set, and ";
    std::ifstream file(path);
    if (!file)
        throw Error(PANGEA_ERR_CONFIG, looked + "the shared credentials file " + path +
                                           " cannot be read (set AWS_SHARED_CREDENTIALS_FILE to use another)");
    // A minimal INI reader: [section] lines, key = value lines, '#' and ';' comments.
    found = {};
    bool in_profile = false, seen_profile = false;
    for (std::string line; std::getline(file, line);) {
        const std::string text = trim(line);
        if (text.empty() || text[0] == '#' || text[0] == ';') continue;
        if (text.front() == '[' && text.back() == ']') {
            std::string section = trim(std::string_view(text).substr(1, text.size() - 2));
            if (section.rfind("profile ", 0) == 0) section = trim(std::string_view(section).substr(8));
            in_profile = section == profile;
            seen_profile = seen_profile || in_profile;
            continue;
        }
        const size_t equals = text.find('=');
        if (!in_profile || equals == std::string::npos) continue;
        const std::string name = trim(std::string_view(text).substr(0, equals));
        const std::string value = trim(std::string_view(text).substr(equals + 1));
        if (name == "aws_access_key_id") found.key_id = value;
        else if (name == "aws_secret_access_key") found.secret = value;
        else if (name == "aws_session_token") found.session_token = value;
    }
    if (!seen_profile)
        throw Error(PANGEA_ERR_CONFIG, looked + path + " has no profile [" + profile + "] (setting 'profile')");
    if (found.key_id.empty() || found.secret.empty())
        throw Error(PANGEA_ERR_CONFIG, looked + "profile [" + profile + "] in " + path +
                                           " lacks aws_access_key_id or aws_secret_access_key");
    found.source = "profile [" + profile + "] of " + path;
    return found;
}

// ------------------------------------------------------------------ HTTP

struct Request {
    const char* method = "GET";
    std::string url;
    std::string_view body;       // PUT / POST body, borrowed; kept whole for every retry
    std::string payload_sha256;  // hex SHA-256 of body (signed as x-amz-content-sha256)
    const char* content_type = nullptr;
    std::string range;           // "bytes=a-b", or "" for none
    // A GET can land straight in the caller's memory: at most sink_bytes, from byte `offset`.
    char* sink = nullptr;
    size_t sink_bytes = 0;
    uint64_t offset = 0;
};

struct Response {
    CURLcode curl = CURLE_OK;
    std::string curl_error;
    long status = 0;
    std::string body;  // an error's XML, or a small answer (never object data)
    std::string etag;
    curl_off_t content_length = -1;
    size_t sunk = 0;  // bytes written to Request::sink
    bool past_end = false;  // Content-Range says the range starts at or after the end
    int attempts = 0;

    bool transport_failed() const { return curl != CURLE_OK; }
    bool ok() const { return !transport_failed() && status >= 200 && status < 300 && !error_in_body(); }
    // CompleteMultipartUpload can answer 200 and still fail, with an <Error> body.
    bool error_in_body() const { return status == 200 && std::strcmp(Xml(body).root().name(), "Error") == 0; }
    std::string code() const { return Xml(body).first("Code"); }
};

// The state of one attempt, shared with curl's callbacks.
struct Transfer {
    const Request& request;
    Response& response;
    CURL* handle;
    bool decided = false, into_sink = false, sink_full = false;
    uint64_t to_skip = 0;
};

size_t on_body(char* data, size_t, size_t bytes, void* user) {
    auto& t = *static_cast<Transfer*>(user);
    if (!t.decided) {
        // Object bytes go to the sink; an error's XML to the body string.
        long status = 0;
        curl_easy_getinfo(t.handle, CURLINFO_RESPONSE_CODE, &status);
        t.into_sink = t.request.sink != nullptr && (status == 200 || status == 206);
        t.to_skip = status == 200 ? t.request.offset : 0;  // a server that ignored Range
        t.decided = true;
    }
    if (!t.into_sink) {
        if (t.response.body.size() + bytes > kMaxAnswer) return 0;  // not S3: fail rather than grow
        t.response.body.append(data, bytes);
        return bytes;
    }
    size_t used = 0;
    const auto skip = static_cast<size_t>(std::min<uint64_t>(t.to_skip, bytes));
    t.to_skip -= skip, used += skip;
    const size_t take = std::min(bytes - used, t.request.sink_bytes - t.response.sunk);
    std::copy_n(data + used, take, t.request.sink + t.response.sunk);
    t.response.sunk += take, used += take;
    if (used < bytes) {
        t.sink_full = true;  // more than asked for: stop the transfer, we have what we need
        return 0;
    }
    return bytes;
}

size_t on_header(char* data, size_t, size_t bytes, void* user) {
    auto& t = *static_cast<Transfer*>(user);
    const std::string_view line(data, bytes);
    if (starts_with_ci(line, "etag:")) t.response.etag = trim(line.substr(5));
    if (t.request.sink != nullptr && starts_with_ci(line, "content-range:")) {
        // "bytes a-b/total". s3rver answers a range on an empty object with "bytes 0-0/0" and a
        // byte it never sends; stop there rather than wait for it.
        const size_t slash = line.find('/');
        const std::string total_text = slash == std::string_view::npos ? "" : trim(line.substr(slash + 1));
        uint64_t total = 0;
        const auto [end, error] = std::from_chars(total_text.data(), total_text.data() + total_text.size(), total);
        if (error == std::errc() && end == total_text.data() + total_text.size() && t.request.offset >= total) {
            t.response.past_end = true;
            return 0;
        }
    }
    return bytes;
}

// Idle easy handles, so that requests reuse their connections (and TLS sessions). One handle
// serves one request at a time.
class HandlePool {
public:
    class Lease {
    public:
        Lease(HandlePool& pool, CurlHandle handle) : pool_(pool), handle_(std::move(handle)) {}
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        ~Lease() { pool_.give_back(std::move(handle_)); }
        CURL* get() const noexcept { return handle_.get(); }

    private:
        HandlePool& pool_;
        CurlHandle handle_;
    };

    Lease take() {
        {
            std::lock_guard lock(mutex_);
            if (!idle_.empty()) {
                CurlHandle handle = std::move(idle_.back());
                idle_.pop_back();
                return Lease(*this, std::move(handle));
            }
        }
        CurlHandle handle(curl_easy_init());
        if (!handle) throw Error(PANGEA_ERR_NO_MEMORY, "s3: curl_easy_init failed");
        return Lease(*this, std::move(handle));
    }

private:
    void give_back(CurlHandle handle) noexcept {
        if (!handle) return;
        curl_easy_reset(handle.get());  // forgets the options, keeps the connections
        std::lock_guard lock(mutex_);
        if (idle_.size() < idle_.capacity()) idle_.push_back(std::move(handle));
    }

    std::mutex mutex_;
    std::vector<CurlHandle> idle_ = [] {
        std::vector<CurlHandle> v;
        v.reserve(kMaxIdleHandles);  // give_back never allocates
        return v;
    }();
};

// ------------------------------------------------------------------ the plugin

class S3 final : public pangea::sdk::Storage {
public:
    static constexpr const char* name = "s3";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description =
        "objects in an S3-compatible bucket (SigV4 via libcurl; multipart uploads in parallel)";
    static std::vector<pangea_setting> settings() {
        using namespace pangea::sdk;
        return {
            string_setting("endpoint", nullptr,
                           "http(s)://host[:port] of the S3 API, e.g. https://s3.us-east-1.amazonaws.com"),
            string_setting("region", "us-east-1", "the region requests are signed for"),
            string_setting("bucket", nullptr, "the bucket (must exist)"),
            string_setting("prefix", "", "prepended to every key, e.g. team/run1/"),
            bool_setting("path_style", "true",
                         "address the bucket as endpoint/bucket (false: virtual-hosted bucket.endpoint-host)"),
            int_setting("part_mib", "16", "multipart upload part size in MiB (objects up to one part: one PUT)", 5,
                        5120),
            int_setting("parallel_parts", "4", "parts of one object uploaded at once", 1, 64),
            int_setting("retries", "5", "retries of a request failing with a network error, 5xx or 429", 0, 20),
            int_setting("timeout_s", "60", "connect timeout, and how long a transfer may stall, in seconds", 1,
                        3600),
            string_setting("profile", "default",
                           "profile of the shared credentials file used when AWS_ACCESS_KEY_ID is not set"),
        };
    }

    explicit S3(const pangea::sdk::Host& host)
        : host_(host),
          endpoint_(host.get_string("endpoint")),
          region_(host.get_string("region")),
          bucket_(host.get_string("bucket")),
          prefix_(host.get_string("prefix")),
          path_style_(host.get_bool("path_style")),
          part_bytes_(static_cast<size_t>(host.get_int("part_mib")) << 20),
          parallel_(static_cast<size_t>(host.get_int("parallel_parts"))),
          retries_(static_cast<int>(host.get_int("retries"))),
          timeout_s_(host.get_int("timeout_s")) {
        const std::string profile = host.get_string("profile");
        while (!endpoint_.empty() && endpoint_.back() == '/') endpoint_.pop_back();
        const size_t scheme_end = endpoint_.find("://");
        const std::string scheme = scheme_end == std::string::npos ? "" : endpoint_.substr(0, scheme_end);
        if (scheme != "http" && scheme != "https")
            throw Error(PANGEA_ERR_CONFIG, "s3: endpoint '" + endpoint_ + "' must start with http:// or https://");
        if (bucket_.empty() || bucket_.find_first_of("/?#@: ") != std::string::npos)
            throw Error(PANGEA_ERR_CONFIG, "s3: bucket '" + bucket_ + "' is not a bucket name");
        if (region_.empty()) throw Error(PANGEA_ERR_CONFIG, "s3: region is empty");
        for (const unsigned char c : prefix_)
            if (c < 0x20 || c == 0x7f) throw Error(PANGEA_ERR_CONFIG, "s3: prefix has a control character");
        if (path_style_) {
            bucket_url_ = endpoint_ + "/" + uri_encode(bucket_, false);
        } else {
            // Virtual-hosted: the bucket becomes the first label of the host.
            const size_t host_start = scheme_end + 3;
            bucket_url_ = endpoint_.substr(0, host_start) + bucket_ + "." + endpoint_.substr(host_start);
        }
        sigv4_ = "aws:amz:" + region_ + ":s3";
        curl_global_once();
        credentials_ = load_credentials(profile);  // last: a bad setting is reported first
        host.log(PANGEA_LOG_DEBUG, "s3: bucket " + bucket_ + " at " + endpoint_ + ", credentials from " +
                                       credentials_.source);
    }

    pangea_storage_writer* open_write(const char* key) override {
        auto writer = std::make_unique<pangea_storage_writer>();
        writer->key = full_key(key);
        return writer.release();
    }

    void write(pangea_storage_writer* writer, const void* data, size_t bytes) override {
        const auto* from = static_cast<const char*>(data);
        while (bytes > 0) {
            // A full part goes only once more bytes come: an object of exactly one part is a PUT.
            if (writer->buffer.size() == part_bytes_) send_part(*writer);
            const size_t take = std::min(bytes, part_bytes_ - writer->buffer.size());
            auto& buffer = writer->buffer;
            if (buffer.capacity() < buffer.size() + take) {
                // A small object's buffer grows as needed; once parts go up, each is a whole part.
                const size_t grown = writer->upload_id.empty() ? std::max(buffer.size() + take, 2 * buffer.capacity())
                                                               : part_bytes_;
                buffer.reserve(std::min(part_bytes_, grown));
            }
            buffer.insert(buffer.end(), from, from + take);
            from += take;
            bytes -= take;
        }
    }

    void commit(pangea_storage_writer* writer) override {
        std::unique_ptr<pangea_storage_writer> owned(writer);
        try {
            if (owned->upload_id.empty()) {
                put_object(owned->key, owned->buffer);
                return;
            }
            send_part(*owned);  // the last one, never empty
            while (!owned->in_flight.empty()) collect_oldest(*owned);
            complete_upload(*owned);
        } catch (...) {
            discard(*owned);
            throw;
        }
    }

    void abort(pangea_storage_writer* writer) noexcept override {
        std::unique_ptr<pangea_storage_writer> owned(writer);
        discard(*owned);
    }

    size_t read(const char* key, uint64_t offset, void* dst, size_t bytes) override {
        const std::string full = full_key(key);
        if (bytes == 0) {
            // No valid Range for zero bytes; a HEAD still reports a missing key as the ABI asks.
            head_object(full, "read");
            return 0;
        }
        Request request;
        request.url = object_url(full);
        const uint64_t last = offset + std::min<uint64_t>(bytes - 1, UINT64_MAX - offset);
        request.range = "bytes=" + std::to_string(offset) + "-" + std::to_string(last);
        request.sink = static_cast<char*>(dst);
        request.sink_bytes = bytes;
        request.offset = offset;
        const Response response = perform(request);
        if (response.past_end || response.status == 416) return 0;  // the range starts at or after the end
        if (response.ok()) return response.sunk;
        throw failure("read", full, response);
    }

    uint64_t stat(const char* key) override { return head_object(full_key(key), "stat"); }

    void list(const char* prefix, pangea_storage_list_fn fn, void* user) override {
        const std::string wanted = prefix_ + prefix;
        std::vector<std::pair<std::string, uint64_t>> found;
        std::string token;
        do {
            std::vector<std::pair<std::string, std::string>> params = {{"list-type", "2"}, {"prefix", wanted}};
            if (!token.empty()) params.emplace_back("continuation-token", token);
            Request request;
            request.url = bucket_root_url() + query_string(std::move(params));
            const Response response = perform(request);
            if (!response.ok()) throw failure("list of prefix", wanted, response);
            const Xml xml(response.body);
            for (const pugi::xml_node entry : xml.root().children("Contents")) {
                const std::string key = entry.child_value("Key");
                const std::string_view size_text = entry.child_value("Size");
                uint64_t size = 0;
                std::from_chars(size_text.data(), size_text.data() + size_text.size(), size);
                if (key.compare(0, prefix_.size(), prefix_) == 0) found.emplace_back(key.substr(prefix_.size()), size);
            }
            const bool truncated = std::string_view(xml.root().child_value("IsTruncated")) == "true";
            token = truncated ? xml.root().child_value("NextContinuationToken") : "";
            if (token.empty() && truncated)
                throw Error(PANGEA_ERR_IO, "s3: list of prefix " + wanted + " in bucket " + bucket_ +
                                               ": a truncated answer without NextContinuationToken");
        } while (!token.empty());
        std::sort(found.begin(), found.end());  // S3 sorts too, but the ABI's order is ours to keep
        for (const auto& [key, size] : found)
            if (fn(user, key.c_str(), size) != 0) break;
    }

    void remove(const char* key) override {
        const std::string full = full_key(key);
        head_object(full, "remove");  // DELETE answers 204 for a missing key too
        Request request;
        request.method = "DELETE";
        request.url = object_url(full);
        const Response response = perform(request);
        if (!response.ok()) throw failure("remove", full, response);
    }

private:
    // ---- keys and URLs

    std::string full_key(const char* key) const {
        const std::string given = key;
        if (given.empty()) throw Error(PANGEA_ERR_INVALID_ARGUMENT, "s3: empty key");
        for (const unsigned char c : given)
            if (c < 0x20 || c == 0x7f)
                throw Error(PANGEA_ERR_INVALID_ARGUMENT, "s3: key '" + given + "' has a control character");
        std::string full = prefix_ + given;
        if (full.size() > kMaxKeyBytes)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "s3: key '" + full + "' is longer than S3's 1024 bytes");
        return full;
    }

    // The bucket's own resource (ListObjectsV2, HEAD bucket).
    std::string bucket_root_url() const { return path_style_ ? bucket_url_ : bucket_url_ + "/"; }

    std::string object_url(const std::string& key, std::vector<std::pair<std::string, std::string>> params = {}) const {
        return bucket_url_ + "/" + uri_encode(key, true) + query_string(std::move(params));
    }

    // ---- requests

    Response perform(const Request& request) const {
        for (int attempt = 0;; ++attempt) {
            Response response = perform_once(request);
            response.attempts = attempt + 1;
            if (!retryable(response) || attempt >= retries_) return response;
            // Exponential backoff with jitter, so that many writers do not retry in step.
            thread_local std::mt19937 random{std::random_device{}()};
            const int base_ms = std::min(5000, 200 << std::min(attempt, 5));
            const int wait_ms = base_ms + std::uniform_int_distribution<int>(0, base_ms / 4)(random);
            host_.log(PANGEA_LOG_WARN, std::string("s3: ") + request.method + " " + request.url + ": " +
                                           describe(response) + "; retry " + std::to_string(attempt + 1) + " of " +
                                           std::to_string(retries_) + " in " + std::to_string(wait_ms) + " ms");
            std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
        }
    }

    static bool retryable(const Response& response) {
        if (response.transport_failed()) {
            switch (response.curl) {
                case CURLE_UNSUPPORTED_PROTOCOL:
                case CURLE_URL_MALFORMAT:
                case CURLE_NOT_BUILT_IN:
                case CURLE_OUT_OF_MEMORY:
                case CURLE_BAD_FUNCTION_ARGUMENT:
                case CURLE_PEER_FAILED_VERIFICATION:
                case CURLE_SSL_CERTPROBLEM:
                case CURLE_SSL_CACERT_BADFILE:
                case CURLE_LOGIN_DENIED:
                case CURLE_WRITE_ERROR:  // our callbacks refused an answer (over 32 MiB of XML)
                    return false;        // retrying cannot help
                default: return true;
            }
        }
        return response.status >= 500 || response.status == 429 || response.error_in_body();
    }

    Response perform_once(const Request& request) const {
        Response response;
        HandlePool::Lease lease = handles_.take();
        CURL* const curl = lease.get();
        Transfer transfer{request, response, curl};
        char error_text[CURL_ERROR_SIZE] = "";

        HeaderList headers;
        // curl 7.88 does not add x-amz-content-sha256 (S3 requires it); it signs the one given.
        append_header(headers, "x-amz-content-sha256: " +
                                   (request.payload_sha256.empty() ? std::string(kEmptySha256) : request.payload_sha256));
        if (!credentials_.session_token.empty())
            append_header(headers, "x-amz-security-token: " + credentials_.session_token);
        if (!request.range.empty()) append_header(headers, "Range: " + request.range);
        if (request.content_type != nullptr) append_header(headers, std::string("Content-Type: ") + request.content_type);

        curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);   // threads: no SIGALRM for DNS timeouts
        curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L); // keys like "a/../b" are names, not paths
        curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, sigv4_.c_str());
        curl_easy_setopt(curl, CURLOPT_USERNAME, credentials_.key_id.c_str());
        curl_easy_setopt(curl, CURLOPT_PASSWORD, credentials_.secret.c_str());
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_text);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
        // No overall time limit (a 5 GiB part may take long): fail on a stalled connection instead.
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, static_cast<long>(timeout_s_));
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, static_cast<long>(timeout_s_));

        const std::string_view method = request.method;
        if (method == "HEAD") {
            curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
        } else if (method == "PUT" || method == "POST") {
            // The body is sent from memory as is; CUSTOMREQUEST turns the POST into a PUT.
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.empty() ? "" : request.body.data());
            if (method == "PUT") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
        } else if (method != "GET") {
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method);
        }

        response.curl = curl_easy_perform(curl);
        if (response.curl == CURLE_WRITE_ERROR && (transfer.sink_full || response.past_end)) response.curl = CURLE_OK;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
        curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &response.content_length);
        if (response.transport_failed())
            response.curl_error = std::string(curl_easy_strerror(response.curl)) + (error_text[0] ? std::string(": ") + error_text : "");
        return response;
    }

    static std::string describe(const Response& response) {
        if (response.transport_failed()) return response.curl_error;
        std::string text = "HTTP " + std::to_string(response.status);
        const Xml xml(response.body);
        const std::string code = xml.first("Code"), message = xml.first("Message");
        if (!code.empty()) text += " " + code;
        if (!message.empty()) text += ": " + message;
        return text;
    }

    // The error for a failed request: `what` names the operation, `key` the S3 key (or prefix).
    Error failure(const std::string& what, const std::string& key, const Response& response) const {
        const std::string where = "s3: " + what + " " + key + " in bucket " + bucket_ + " at " + endpoint_;
        const std::string tries = response.attempts > 1 ? " (after " + std::to_string(response.attempts) + " attempts)" : "";
        if (response.transport_failed()) return Error(PANGEA_ERR_IO, where + ": " + response.curl_error + tries);
        const std::string code = response.code();
        if (code == "NoSuchBucket")
            return Error(PANGEA_ERR_CONFIG, "s3: bucket " + bucket_ + " does not exist at " + endpoint_ + " (" + what + " " + key + ")");
        if (response.status == 404 && (code == "NoSuchKey" || code.empty()))
            return Error(PANGEA_ERR_NOT_FOUND, "s3: no object " + key + " in bucket " + bucket_);
        if (response.status == 403 || code == "AccessDenied" || code == "InvalidAccessKeyId" ||
            code == "SignatureDoesNotMatch" || code == "InvalidToken" || code == "ExpiredToken")
            return Error(PANGEA_ERR_CONFIG, where + ": access denied (" + describe(response) +
                                                "): check the credentials (from " + credentials_.source +
                                                "), that they may use this bucket, and the region (" + region_ + ")");
        if (code == "AuthorizationHeaderMalformed" || code == "PermanentRedirect" || response.status == 301)
            return Error(PANGEA_ERR_CONFIG, where + ": " + describe(response) + ": is the region (" + region_ +
                                                ") the bucket's, and the endpoint right?");
        return Error(PANGEA_ERR_IO, where + ": " + describe(response) + tries);
    }

    // HEAD of an object: its size. A 404 has no body to tell a missing key from a missing bucket,
    // so the bucket is asked about then.
    uint64_t head_object(const std::string& key, const std::string& what) const {
        Request request;
        request.method = "HEAD";
        request.url = object_url(key);
        const Response response = perform(request);
        if (response.ok()) {
            if (response.content_length < 0)
                throw Error(PANGEA_ERR_IO, "s3: " + what + " " + key + " in bucket " + bucket_ + ": no Content-Length");
            return static_cast<uint64_t>(response.content_length);
        }
        if (response.status == 404) {
            Request bucket;
            bucket.method = "HEAD";
            bucket.url = bucket_root_url();
            const Response answer = perform(bucket);
            if (answer.status == 404)
                throw Error(PANGEA_ERR_CONFIG, "s3: bucket " + bucket_ + " does not exist at " + endpoint_ + " (" + what + " " + key + ")");
        }
        throw failure(what, key, response);
    }

    void put_object(const std::string& key, const std::vector<char>& bytes) const {
        Request request;
        request.method = "PUT";
        request.url = object_url(key);
        request.body = std::string_view(bytes.data(), bytes.size());
        request.payload_sha256 = sha256_hex(request.body);
        request.content_type = "application/octet-stream";
        const Response response = perform(request);
        if (!response.ok()) throw failure("write of", key, response);
    }

    std::string start_upload(const std::string& key) const {
        Request request;
        request.method = "POST";
        request.url = object_url(key, {{"uploads", ""}});
        request.content_type = "application/octet-stream";  // becomes the object's type
        const Response response = perform(request);
        if (!response.ok()) throw failure("start of the multipart upload of", key, response);
        std::string id = Xml(response.body).first("UploadId");
        if (id.empty())
            throw Error(PANGEA_ERR_IO, "s3: start of the multipart upload of " + key + " in bucket " + bucket_ +
                                           ": no UploadId in the answer");
        return id;
    }

    // Runs on a part's own thread; returns the part's ETag.
    std::string upload_part(const std::string& key, const std::string& upload_id, int number,
                            const std::vector<char>& bytes) const {
        Request request;
        request.method = "PUT";
        request.url = object_url(key, {{"partNumber", std::to_string(number)}, {"uploadId", upload_id}});
        request.body = std::string_view(bytes.data(), bytes.size());
        request.payload_sha256 = sha256_hex(request.body);
        request.content_type = "application/octet-stream";
        const Response response = perform(request);
        const std::string what = "upload of part " + std::to_string(number) + " of";
        if (!response.ok()) throw failure(what, key, response);
        if (response.etag.empty())
            throw Error(PANGEA_ERR_IO, "s3: " + what + " " + key + " in bucket " + bucket_ + ": no ETag in the answer");
        return response.etag;
    }

    // Hands the buffer to a background upload, waiting first while parallel_parts are in flight.
    void send_part(pangea_storage_writer& writer) const {
        if (writer.upload_id.empty()) writer.upload_id = start_upload(writer.key);
        const size_t number = writer.etags.size() + writer.in_flight.size() + 1;
        if (number > kMaxParts)
            throw Error(PANGEA_ERR_CAPACITY, "s3: object " + writer.key + " needs more than " +
                                                 std::to_string(kMaxParts) + " parts: raise part_mib");
        while (writer.in_flight.size() >= parallel_) collect_oldest(writer);
        writer.in_flight.push_back(std::async(
            std::launch::async,
            [this, key = writer.key, id = writer.upload_id, number = static_cast<int>(number),
             bytes = std::exchange(writer.buffer, {})] { return upload_part(key, id, number, bytes); }));
    }

    // Waits for the oldest part in flight; throws its failure.
    static void collect_oldest(pangea_storage_writer& writer) {
        std::future<std::string> oldest = std::move(writer.in_flight.front());
        writer.in_flight.pop_front();
        writer.etags.push_back(oldest.get());
    }

    void complete_upload(const pangea_storage_writer& writer) const {
        pugi::xml_document doc;
        pugi::xml_node parts = doc.append_child("CompleteMultipartUpload");
        for (size_t i = 0; i < writer.etags.size(); ++i) {
            pugi::xml_node part = parts.append_child("Part");
            part.append_child("PartNumber").text().set(std::to_string(i + 1).c_str());
            part.append_child("ETag").text().set(writer.etags[i].c_str());
        }
        struct : pugi::xml_writer {
            std::string text;
            void write(const void* data, size_t size) override { text.append(static_cast<const char*>(data), size); }
        } out;
        doc.save(out, "", pugi::format_raw | pugi::format_no_declaration);
        const std::string& xml = out.text;
        Request request;
        request.method = "POST";
        request.url = object_url(writer.key, {{"uploadId", writer.upload_id}});
        request.body = xml;
        request.payload_sha256 = sha256_hex(xml);
        request.content_type = "application/xml";
        const Response response = perform(request);
        if (!response.ok()) throw failure("completion of the multipart upload of", writer.key, response);
    }

    // Drops a writer's work: waits for its parts, then aborts its upload. Best effort (some
    // stores, s3rver among them, answer 405); a real S3 bucket should also have a lifecycle
    // rule that removes incomplete multipart uploads.
    void discard(pangea_storage_writer& writer) const noexcept {
        writer.in_flight.clear();  // std::async futures join their threads when destroyed
        if (writer.upload_id.empty()) return;
        try {
            Request request;
            request.method = "DELETE";
            request.url = object_url(writer.key, {{"uploadId", writer.upload_id}});
            const Response response = perform(request);
            if (!response.ok() && response.status != 405 && response.status != 501)
                host_.log(PANGEA_LOG_WARN, "s3: could not abort the multipart upload of " + writer.key + ": " +
                                               describe(response));
        } catch (...) {
            // best effort: nothing of the upload is visible either way
        }
    }

    pangea::sdk::Host host_;
    std::string endpoint_, region_, bucket_, prefix_;
    bool path_style_;
    size_t part_bytes_, parallel_;
    int retries_;
    int64_t timeout_s_;
    std::string bucket_url_, sigv4_;
    Credentials credentials_;
    mutable HandlePool handles_;
};

}  // namespace

PANGEA_EXPORT_PLUGINS(S3)
