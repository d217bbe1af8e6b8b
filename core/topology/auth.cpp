#include "topology/auth.hpp"

#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/log.hpp"
#include "manifest/manifest.hpp"
#include "topology/ring_setup.hpp"

namespace pangea {
namespace {

std::string hex(const unsigned char* bytes, size_t count) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < count; ++i) out += {digits[bytes[i] >> 4], digits[bytes[i] & 15]};
    return out;
}

constexpr size_t kNonceChars = 32, kDigestChars = 64;

}  // namespace

std::string load_run_secret(const Manifest& m) {
    const std::string file = m.get_string("mesh", "secret_file");
    const std::string variable = m.get_string("mesh", "secret_env");
    std::string secret;
    if (!file.empty()) {
        const std::string where = m.core.at("mesh").at("secret_file").origin + ": [mesh] secret_file " + file;
        std::ifstream in(file);
        if (!in) throw std::runtime_error(where + " cannot be read");
        std::ostringstream text;
        text << in.rdbuf();
        secret = text.str();
        while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
        if (secret.empty()) throw std::runtime_error(where + " is empty");
        struct stat info {};
        if (stat(file.c_str(), &info) == 0 && (info.st_mode & (S_IRGRP | S_IROTH)))
            log(PANGEA_LOG_WARN, "mesh", where + " can be read by other users; chmod 600 it");
    } else if (!variable.empty()) {
        const char* value = std::getenv(variable.c_str());
        if (value == nullptr || *value == '\0')
            throw std::runtime_error(m.core.at("mesh").at("secret_env").origin + ": [mesh] secret_env names " + variable +
                                     ", which is not set in this process's environment");
        secret = value;
    }
    return secret;
}

std::string random_nonce() {
    unsigned char bytes[kNonceChars / 2];
    if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("the system's random source failed");
    return hex(bytes, sizeof bytes);
}

std::string hmac_sha256_hex(const std::string& key, const std::string& message) {
    unsigned char digest[32];
    unsigned int length = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
         message.size(), digest, &length);
    return hex(digest, length);
}

bool same_digest(const std::string& a, const std::string& b) {
    if (a.size() != b.size()) return false;
    unsigned char difference = 0;
    for (size_t i = 0; i < a.size(); ++i) difference |= static_cast<unsigned char>(a[i] ^ b[i]);
    return difference == 0;
}

void authenticate_link(const Link& link, const std::string& secret, bool initiator, std::chrono::milliseconds timeout) {
    if (secret.empty()) return;
    const int wait_ms = static_cast<int>(timeout.count());
    auto exchange = [&](const std::string& out, size_t in_size, const char* what) {
        std::string in(in_size, '\0');
        pangea_status status = PANGEA_OK;
        Request receive = link.receive(in.data(), in.size(), &status);
        if (status == PANGEA_OK) {
            Request send = link.send(out.data(), out.size(), &status);
            if (status == PANGEA_OK && send.pending()) status = send.wait(wait_ms);
        }
        if (status == PANGEA_OK && receive.pending()) status = receive.wait(wait_ms);
        if (status != PANGEA_OK) {
            link.abort();
            throw MeshError(std::string("authentication failed: no ") + what + " from the peer (" +
                            (status == PANGEA_ERR_TIMEOUT ? "nothing within " + std::to_string(wait_ms) + " ms"
                                                          : link.transport().describe_failure("exchange", status)) +
                            ")");
        }
        return in;
    };
    const std::string own = random_nonce();
    const std::string theirs = exchange(own, kNonceChars, "nonce");
    // Each side signs both nonces and its role, so that no proof can be replayed or reflected.
    const char* role = initiator ? "initiator" : "responder";
    const char* peer_role = initiator ? "responder" : "initiator";
    const std::string proof = hmac_sha256_hex(secret, std::string("pangea-link|") + role + "|" + theirs + "|" + own);
    const std::string peer_proof = exchange(proof, kDigestChars, "proof");
    if (!same_digest(peer_proof, hmac_sha256_hex(secret, std::string("pangea-link|") + peer_role + "|" + own + "|" + theirs))) {
        link.abort();
        throw MeshError("authentication failed: the peer does not hold the run's secret");
    }
}

}  // namespace pangea
