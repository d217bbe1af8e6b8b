// The run's shared secret, and proof of knowing it without sending it: HMAC-SHA256 over fresh
// nonces (challenge-response). Used when a node registers with the coordinator and on every
// transport connection between nodes (ring and live recovery), so that a stranger without the
// secret is refused before it learns anything about the run.
#pragma once

#include <chrono>
#include <string>

#include "collective/link.hpp"

namespace pangea {

struct Manifest;

// From `[mesh] secret_file` or `[mesh] secret_env` (never the manifest itself); empty when the
// run has none. Throws std::runtime_error naming the setting for an unreadable or empty secret.
std::string load_run_secret(const Manifest& manifest);

std::string random_nonce();  // 32 hex digits from the system's randomness
std::string hmac_sha256_hex(const std::string& key, const std::string& message);
bool same_digest(const std::string& a, const std::string& b);  // in constant time

// Both ends of a fresh connection prove they hold `secret` (the initiator is the side that
// connected). Throws MeshError "authentication failed: ..." on a wrong proof, a peer that says
// nothing within `timeout`, or a broken connection. Does nothing when `secret` is empty.
void authenticate_link(const Link& link, const std::string& secret, bool initiator,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

}  // namespace pangea
