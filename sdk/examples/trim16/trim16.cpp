// An example compression plugin written against the installed Pangea SDK only.
//
// "trim16" keeps the top `bits` bits of each fp32 value (sign, exponent and the leading mantissa
// bits; 16 gives bfloat16 truncated toward zero) and sends them packed as 16-bit words when
// bits <= 16, else as full 32-bit words. Wire format: a 12-byte header (magic "TR16", the bit
// count, the value count) then the words, in host byte order (little-endian on x86-64 and arm64).
#include <cmath>
#include <cstring>

#include "pangea/sdk.hpp"

namespace {

using pangea::sdk::Error;

constexpr char kMagic[4] = {'T', 'R', '1', '6'};
constexpr size_t kHeader = 12;

class Trim16 final : public pangea::sdk::Compressor {
public:
    static constexpr const char* name = "trim16";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description =
        "example: keeps the top bits of each float (16 bits = truncated bfloat16)";
    static std::vector<pangea_setting> settings() {
        return {pangea::sdk::int_setting("bits", "16", "leading bits of each fp32 value to keep",
                                         10, 32)};
    }

    explicit Trim16(const pangea::sdk::Host& host)
        : bits_(static_cast<uint32_t>(host.get_int("bits"))) {
        host.log(PANGEA_LOG_DEBUG, "keeping " + std::to_string(bits_) + " bits per value");
    }

    size_t max_encoded_size(size_t n) override { return kHeader + n * word_size(); }

    // Truncation keeps bits - 9 mantissa bits: each value is off by less than 2^-(bits - 9) of
    // itself, so the whole buffer is too. pangea-plugin-check holds round trips to this.
    double error_bound() override { return std::ldexp(1.0, -static_cast<int>(bits_ - 9)); }

    void encode(const float* src, size_t n, uint8_t* dst, size_t capacity,
                size_t* written) override {
        if (n > UINT32_MAX)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "trim16 encodes at most 2^32-1 values per call");
        const size_t bytes = max_encoded_size(n);
        if (capacity < bytes)
            throw Error(PANGEA_ERR_CAPACITY, "trim16 needs " + std::to_string(bytes) +
                                                 " bytes, capacity is " + std::to_string(capacity));
        const uint32_t mask = bits_ == 32 ? 0xffffffffu : ~((1u << (32 - bits_)) - 1u);
        for (size_t i = 0; i < n; ++i)
            if (!std::isfinite(src[i]))
                throw Error(PANGEA_ERR_INVALID_DATA,
                            "value " + std::to_string(i) + " is not finite");
        const uint32_t count = static_cast<uint32_t>(n);
        std::memcpy(dst, kMagic, 4);
        std::memcpy(dst + 4, &bits_, 4);
        std::memcpy(dst + 8, &count, 4);
        for (size_t i = 0; i < n; ++i) {
            uint32_t word;
            std::memcpy(&word, &src[i], 4);
            word &= mask;
            if (word_size() == 2) {
                const uint16_t half = static_cast<uint16_t>(word >> 16);
                std::memcpy(dst + kHeader + 2 * i, &half, 2);
            } else {
                std::memcpy(dst + kHeader + 4 * i, &word, 4);
            }
        }
        *written = bytes;
    }

    void decode(const uint8_t* src, size_t bytes, float* dst, size_t n) override {
        check(src, bytes, n);
        for (size_t i = 0; i < n; ++i) dst[i] = value(src, i);
    }

    void decode_accumulate(const uint8_t* src, size_t bytes, float* acc, size_t n) override {
        check(src, bytes, n);
        for (size_t i = 0; i < n; ++i) acc[i] += value(src, i);
    }

    uint64_t capabilities() override { return PANGEA_COMPRESS_CAP_ERROR_FEEDBACK; }

private:
    size_t word_size() const { return bits_ <= 16 ? 2 : 4; }

    void check(const uint8_t* src, size_t bytes, size_t n) const {
        if (bytes < kHeader || std::memcmp(src, kMagic, 4) != 0)
            throw Error(PANGEA_ERR_CORRUPT, "not trim16 data (bad magic or too short)");
        uint32_t bits = 0, count = 0;
        std::memcpy(&bits, src + 4, 4);
        std::memcpy(&count, src + 8, 4);
        if (bits != bits_)
            throw Error(PANGEA_ERR_CORRUPT, "encoded with bits = " + std::to_string(bits) +
                                                ", this instance uses " + std::to_string(bits_));
        if (count != n || bytes != kHeader + n * word_size())
            throw Error(PANGEA_ERR_CORRUPT, "holds " + std::to_string(count) + " values in " +
                                                std::to_string(bytes) + " bytes, expected " +
                                                std::to_string(n) + " values");
    }

    float value(const uint8_t* src, size_t i) const {
        uint32_t word = 0;
        if (word_size() == 2) {
            uint16_t half;
            std::memcpy(&half, src + kHeader + 2 * i, 2);
            word = static_cast<uint32_t>(half) << 16;
        } else {
            std::memcpy(&word, src + kHeader + 4 * i, 4);
        }
        float out;
        std::memcpy(&out, &word, 4);
        return out;
    }

    uint32_t bits_;
};

}  // namespace

PANGEA_EXPORT_PLUGINS(Trim16)
