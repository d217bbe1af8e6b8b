// An example gather-mode compression plugin written against the installed Pangea SDK only.
//
// "sign1" sends one bit per value, its sign, and one fp32 scale per block of `block_size` values:
// the block's mean |x|. Decoding gives +scale or -scale. About 1/32 of fp32's size, very lossy, so
// it declares:
// - PANGEA_COMPRESS_CAP_GATHER: signs cannot be summed along a ring (a partial sum of two nodes'
//   signs is not a sign), so each node encodes its own contribution once and every node decodes
//   all of them (compress.h). Hosts older than ABI 1.4 do not know the flag, so the library
//   refuses them: `min_host_abi_minor = 4`.
// - PANGEA_COMPRESS_CAP_ERROR_FEEDBACK: the host carries what a round loses into the next.
//
// Wire format, in host byte order (little-endian on x86-64 and arm64):
//   offset 0   4 bytes   magic "SGN1"
//          4   uint32    block_size B (must match the decoding instance's)
//          8   uint32    n, the value count
//         12   fp32[ceil(n / B)]   each block's scale: finite, >= 0, sign bit clear
//          .   uint8[ceil(n / 8)]  the signs, value i at bit (i % 8) of byte i / 8, 1 = negative;
//                                  bits past n are 0
// Every message for n values has exactly that size. decode() refuses anything else (a short or
// long buffer, another magic, B or n, a negative or non-finite scale, padding bits set) with
// PANGEA_ERR_CORRUPT before it writes anything.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "pangea/sdk.hpp"

namespace {

using pangea::sdk::Error;

constexpr char kMagic[4] = {'S', 'G', 'N', '1'};
constexpr size_t kHeader = 12;

class Sign1 final : public pangea::sdk::Compressor {
public:
    static constexpr const char* name = "sign1";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description =
        "example: 1-bit signs with one scale (mean |x|) per block, gathered, with error feedback";
    // PANGEA_COMPRESS_CAP_GATHER means nothing to a host older than 1.4: refuse those.
    static constexpr uint32_t min_host_abi_minor = 4;
    static std::vector<pangea_setting> settings() {
        return {pangea::sdk::int_setting("block_size", "256", "values sharing one scale", 1, 1 << 20)};
    }

    explicit Sign1(const pangea::sdk::Host& host)
        : block_(static_cast<uint32_t>(host.get_int("block_size"))) {}

    size_t max_encoded_size(size_t n) override { return message_size(n); }

    // The promise: |decode(encode(x)) - x| <= |x|, for any finite x. Proof. Take one block, its
    // k values x_i, A = sum |x_i|, and the scale s it sends. Decoding gives each value s with the
    // value's own sign, so its error is | |x_i| - s |, and the block's squared error is
    //     sum (|x_i| - s)^2 = sum x_i^2 - s (2A - k s),
    // which is at most sum x_i^2 whenever 0 <= s <= 2A / k, twice the block's mean |x|. Encode
    // sums |x_i| in double (all terms >= 0: a relative error below k * 2^-53 <= 2^-33), divides
    // by k, and rounds toward zero to fp32, so 0 <= s <= A / k * (1 + 2^-32) < 2A / k. Adding
    // the blocks up, the squared error of the whole piece is at most |x|^2. (It is less: for
    // blocks whose mean is a normal float, s (2A - k s) is about A^2 / k >= sum x_i^2 / k by
    // Cauchy-Schwarz, so the error is near sqrt(1 - 1/B) |x| at most; but a block of tiny
    // subnormals may round s to 0 and lose all of itself. Gaussian values lose about
    // sqrt(1 - 2/pi) = 0.60 of |x|.) Error feedback needs the error below |x|, which holds for
    // every x whose blocks' means are not below the smallest fp32 subnormal.
    double error_bound() override { return 1.0; }

    void encode(const float* src, size_t n, uint8_t* dst, size_t capacity, size_t* written) override {
        if (n > UINT32_MAX)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "sign1 encodes at most 2^32-1 values per call");
        const size_t bytes = message_size(n);
        if (capacity < bytes)
            throw Error(PANGEA_ERR_CAPACITY, "sign1 needs " + std::to_string(bytes) + " bytes, capacity is " +
                                                 std::to_string(capacity));
        for (size_t i = 0; i < n; ++i)
            if (!std::isfinite(src[i]))
                throw Error(PANGEA_ERR_INVALID_DATA, "value " + std::to_string(i) + " is not finite");
        const uint32_t count = static_cast<uint32_t>(n);
        std::memcpy(dst, kMagic, 4);
        std::memcpy(dst + 4, &block_, 4);
        std::memcpy(dst + 8, &count, 4);
        uint8_t* scales = dst + kHeader;
        for (size_t b = 0, begin = 0; begin < n; ++b, begin += block_) {
            const size_t end = std::min(n, begin + block_);
            double sum = 0;
            for (size_t i = begin; i < end; ++i) sum += std::fabs(src[i]);
            const double mean = sum / static_cast<double>(end - begin);
            float scale = static_cast<float>(mean);
            if (static_cast<double>(scale) > mean) scale = std::nextafter(scale, 0.0f);  // toward zero
            std::memcpy(scales + 4 * b, &scale, 4);
        }
        uint8_t* signs = scales + 4 * blocks(n);
        std::memset(signs, 0, (n + 7) / 8);
        for (size_t i = 0; i < n; ++i)
            if (std::signbit(src[i])) signs[i / 8] = static_cast<uint8_t>(signs[i / 8] | (1u << (i % 8)));
        *written = bytes;
    }

    void decode(const uint8_t* src, size_t bytes, float* dst, size_t n) override {
        check(src, bytes, n);
        each_value(src, n, [dst](size_t i, float value) { dst[i] = value; });
    }

    void decode_accumulate(const uint8_t* src, size_t bytes, float* acc, size_t n) override {
        check(src, bytes, n);  // before anything is added: a corrupt message leaves acc alone
        each_value(src, n, [acc](size_t i, float value) { acc[i] += value; });
    }

    uint64_t capabilities() override { return PANGEA_COMPRESS_CAP_GATHER | PANGEA_COMPRESS_CAP_ERROR_FEEDBACK; }

private:
    size_t blocks(size_t n) const { return n / block_ + (n % block_ != 0); }
    size_t message_size(size_t n) const { return kHeader + 4 * blocks(n) + (n + 7) / 8; }

    // Validates the whole message; throws PANGEA_ERR_CORRUPT, saying what is wrong.
    void check(const uint8_t* src, size_t bytes, size_t n) const {
        if (bytes < kHeader || std::memcmp(src, kMagic, 4) != 0)
            throw Error(PANGEA_ERR_CORRUPT, "not sign1 data (bad magic or too short)");
        uint32_t block = 0, count = 0;
        std::memcpy(&block, src + 4, 4);
        std::memcpy(&count, src + 8, 4);
        if (block != block_)
            throw Error(PANGEA_ERR_CORRUPT, "encoded with block_size = " + std::to_string(block) +
                                                ", this instance uses " + std::to_string(block_));
        if (count != n || bytes != message_size(n))
            throw Error(PANGEA_ERR_CORRUPT, "holds " + std::to_string(count) + " values in " + std::to_string(bytes) +
                                                " bytes, expected " + std::to_string(n) + " values in " +
                                                std::to_string(message_size(n)));
        for (size_t b = 0; b < blocks(n); ++b) {
            float scale;
            std::memcpy(&scale, src + kHeader + 4 * b, 4);
            if (!std::isfinite(scale) || std::signbit(scale))
                throw Error(PANGEA_ERR_CORRUPT, "block " + std::to_string(b) + " has the scale " +
                                                    std::to_string(scale) + ", not a finite number >= 0");
        }
        if (n % 8 != 0 && (src[bytes - 1] >> (n % 8)) != 0)
            throw Error(PANGEA_ERR_CORRUPT, "sign bits set past the last value");
    }

    // Calls f(i, value) for each decoded value, in order. The message has passed check().
    template <class F>
    void each_value(const uint8_t* src, size_t n, F f) const {
        const uint8_t* signs = src + kHeader + 4 * blocks(n);
        for (size_t b = 0, begin = 0; begin < n; ++b, begin += block_) {
            float scale;
            std::memcpy(&scale, src + kHeader + 4 * b, 4);
            const size_t end = std::min(n, begin + block_);
            for (size_t i = begin; i < end; ++i) f(i, (signs[i / 8] >> (i % 8)) & 1u ? -scale : scale);
        }
    }

    uint32_t block_;
};

}  // namespace

PANGEA_EXPORT_PLUGINS(Sign1)
