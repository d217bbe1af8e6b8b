#include "common/float_hash.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace pangea {

std::string hash_floats(const float* values, size_t count) {
    // Multiply-xorshift over 8-byte words: fast enough for billions of parameters.
    uint64_t h = 0x9e3779b97f4a7c15ull ^ count;
    const auto* bytes = reinterpret_cast<const unsigned char*>(values);
    const size_t total = count * sizeof(float);
    size_t i = 0;
    for (; i + 8 <= total; i += 8) {
        uint64_t word;
        std::memcpy(&word, bytes + i, 8);
        h = (h ^ word) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    for (; i < total; ++i) h = (h ^ bytes[i]) * 0x100000001b3ull;
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
    return text;
}

}  // namespace pangea
