#include "common/float_hash.hpp"

#include <cstdio>
#include <cstring>

namespace pangea {

// Multiply-xorshift over 8-byte words (fast enough for billions of parameters), the tail bytes
// FNV-style.
FloatHash::FloatHash(size_t count) : h_(0x9e3779b97f4a7c15ull ^ count) {}

void FloatHash::word(uint64_t w) {
    h_ = (h_ ^ w) * 0xff51afd7ed558ccdull;
    h_ ^= h_ >> 32;
}

void FloatHash::add(std::span<const float> values) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
    size_t i = 0;
    const size_t total = values.size_bytes();
    while (pending_bytes_ > 0 && i < total) {  // complete the word a previous piece began
        pending_[pending_bytes_++] = bytes[i++];
        if (pending_bytes_ == 8) {
            uint64_t w;
            std::memcpy(&w, pending_, 8);
            word(w);
            pending_bytes_ = 0;
        }
    }
    for (; i + 8 <= total; i += 8) {
        uint64_t w;
        std::memcpy(&w, bytes + i, 8);
        word(w);
    }
    for (; i < total; ++i) pending_[pending_bytes_++] = bytes[i];
}

std::string FloatHash::hex() const {
    uint64_t h = h_;
    for (size_t i = 0; i < pending_bytes_; ++i) h = (h ^ pending_[i]) * 0x100000001b3ull;
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
    return text;
}

std::string hash_floats(const float* values, size_t count) {
    FloatHash hash(count);
    hash.add({values, count});
    return hash.hex();
}

}  // namespace pangea
