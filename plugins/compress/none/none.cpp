// compress/none: the identity compressor. The bytes on the wire are the fp32 values themselves
// (host byte order), so an uncompressed run goes through the same code path as a compressed one.
#include <algorithm>
#include <cstring>

#include "pangea/sdk.hpp"

namespace {

using pangea::sdk::Error;

class NoneCompressor final : public pangea::sdk::Compressor {
public:
    static constexpr const char* name = "none";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description = "identity: sends fp32 values unchanged";
    static std::vector<pangea_setting> settings() { return {}; }

    explicit NoneCompressor(const pangea::sdk::Host& /*host*/) {}

    // Beyond this, n * 4 would overflow size_t.
    static constexpr size_t kMaxValues = SIZE_MAX / sizeof(float);

    size_t max_encoded_size(size_t n) override { return n > kMaxValues ? SIZE_MAX : n * sizeof(float); }

    void encode(const float* src, size_t n, uint8_t* dst, size_t dst_capacity,
                size_t* written) override {
        if ((src == nullptr && n > 0) || (dst == nullptr && n > 0) || written == nullptr || n > kMaxValues)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "encode: NULL pointer or too many values");
        const size_t bytes = n * sizeof(float);
        if (dst_capacity < bytes)
            throw Error(PANGEA_ERR_CAPACITY, "encode: " + std::to_string(n) + " values need " +
                                                 std::to_string(bytes) + " bytes, capacity is " +
                                                 std::to_string(dst_capacity));
        if (bytes > 0) std::memcpy(dst, src, bytes);
        *written = bytes;
    }

    // The identity: the host may move the caller's buffer without calling us at all.
    uint64_t capabilities() override { return PANGEA_COMPRESS_CAP_IDENTITY; }
    double error_bound() override { return 0.0; }

    void decode(const uint8_t* src, size_t bytes, float* dst, size_t n) override {
        check_length(bytes, n);
        if (n > 0 && (src == nullptr || dst == nullptr)) throw Error(PANGEA_ERR_INVALID_ARGUMENT, "decode: NULL pointer");
        if (bytes > 0) std::memcpy(dst, src, bytes);
    }

    void decode_accumulate(const uint8_t* src, size_t bytes, float* acc, size_t n) override {
        check_length(bytes, n);
        if (n > 0 && (src == nullptr || acc == nullptr)) throw Error(PANGEA_ERR_INVALID_ARGUMENT, "decode: NULL pointer");
        // Through a small aligned buffer: the frame may sit at any address, and this keeps the
        // loop simple enough for the compiler to vectorize.
        constexpr size_t kChunk = 1024;
        float values[kChunk];
        for (size_t first = 0; first < n; first += kChunk) {
            const size_t count = std::min(kChunk, n - first);
            std::memcpy(values, src + first * sizeof(float), count * sizeof(float));
            for (size_t i = 0; i < count; ++i) acc[first + i] += values[i];
        }
    }

private:
    static void check_length(size_t bytes, size_t n) {
        if (n > kMaxValues || bytes != n * sizeof(float))
            throw Error(PANGEA_ERR_CORRUPT, "decode: " + std::to_string(bytes) +
                                                " bytes cannot hold " + std::to_string(n) +
                                                " fp32 values (expected " +
                                                std::to_string(n * sizeof(float)) + ")");
    }
};

}  // namespace

PANGEA_EXPORT_PLUGINS(NoneCompressor)
