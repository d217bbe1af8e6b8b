#include "collective/contribution_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>

namespace pangea {
namespace {

constexpr uint32_t kNormMagic = 0x4d4e4750;  // "PGNM"

struct NormMessage {
    uint32_t magic = kNormMagic;
    uint32_t position = 0;  // whose norm this is
    double norm = 0;
};
static_assert(sizeof(NormMessage) == 16);

[[noreturn]] void fail(const Link& next, const Link& previous, pangea_status status, const std::string& what) {
    next.abort();
    previous.abort();
    throw ContributionCheckError(status, "exchanging contribution norms: " + what);
}

void finish(Request& request, const Link& next, const Link& previous, int timeout_ms, const char* what) {
    const pangea_status status = request.wait(timeout_ms);
    if (status == PANGEA_ERR_TIMEOUT)
        fail(next, previous, status, std::string(what) + ": nothing for " + std::to_string(timeout_ms / 1000) + " s");
    if (status != PANGEA_OK) fail(next, previous, status, std::string(what) + ": " + request.error());
}

double lower_median_of_finite(std::span<const double> norms) {
    std::vector<double> finite;
    for (const double norm : norms)
        if (std::isfinite(norm) && norm >= 0) finite.push_back(norm);
    if (finite.empty()) return 0;
    std::sort(finite.begin(), finite.end());
    return finite[(finite.size() - 1) / 2];
}

std::string scientific(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3g", value);
    return text;
}

}  // namespace

double contribution_norm(std::span<const float> values) {
    double sum = 0;
    for (const float v : values) sum += static_cast<double>(v) * v;  // Inf or NaN stays
    return std::isfinite(sum) ? std::sqrt(sum) : std::nan("");
}

std::vector<double> gather_norms(const Link& next, const Link& previous, int position, int world, double own,
                                 int timeout_ms) {
    std::vector<double> norms(static_cast<size_t>(world), 0.0);
    norms[static_cast<size_t>(position)] = own;
    // Hop h: pass on the norm of position - h, receive that of position - h - 1.
    for (int hop = 0; hop + 1 < world; ++hop) {
        NormMessage outgoing;
        outgoing.position = static_cast<uint32_t>((position - hop + world) % world);
        outgoing.norm = norms[outgoing.position];
        NormMessage incoming{};
        pangea_status status = PANGEA_OK;
        Request receive = previous.receive(&incoming, sizeof incoming, &status);
        if (status != PANGEA_OK) fail(next, previous, status, "receiving: " + previous.transport().last_error());
        Request send = next.send(&outgoing, sizeof outgoing, &status);
        if (status != PANGEA_OK) fail(next, previous, status, "sending: " + next.transport().last_error());
        finish(send, next, previous, timeout_ms, "sending");
        finish(receive, next, previous, timeout_ms, "receiving");
        const auto expected = static_cast<uint32_t>((position - hop - 1 + world) % world);
        if (incoming.magic != kNormMagic || incoming.position != expected)
            fail(next, previous, PANGEA_ERR_CORRUPT,
                 "the previous member sent a malformed norm message (expected the norm of ring position " +
                     std::to_string(expected) + ")");
        norms[expected] = incoming.norm;
    }
    return norms;
}

std::vector<int> outlier_positions(std::span<const double> norms, double factor) {
    const double median = lower_median_of_finite(norms);
    std::vector<int> out;
    for (size_t i = 0; i < norms.size(); ++i)
        if (!std::isfinite(norms[i]) || norms[i] < 0 || (factor > 0 && median > 0 && norms[i] > factor * median))
            out.push_back(static_cast<int>(i));
    return out;
}

std::string outlier_reason(std::span<const double> norms, int position, double factor) {
    const double norm = norms[static_cast<size_t>(position)];
    if (!std::isfinite(norm)) return "its pseudo-gradient holds NaN or Inf";
    if (norm < 0) return "it sent a negative norm";
    return "its pseudo-gradient's norm " + scientific(norm) + " is over " + scientific(factor) + "x the median " +
           scientific(lower_median_of_finite(norms));
}

}  // namespace pangea
