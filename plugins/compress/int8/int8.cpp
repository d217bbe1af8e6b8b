// compress/int8: blockwise 8-bit quantization of fp32 values.
//
// Two schemes, chosen by the `scheme` setting:
// - minmax (PCCL's choice): each block stores its minimum and a scale, (max - min) / 255; a
//   value is stored as round((x - min) / scale) and read back as min + code * scale. The error of
//   each value is at most scale / 2.
// - sigma (prime's choice): each block is clipped to mean +- clip_sigma standard deviations
//   (narrowed to the block's own min and max), cut into 256 equal bins, and stores a 256-entry
//   table holding the mean of the values that fell in each bin; a value reads back as its bin's
//   mean.
//
// Wire format: the 24-byte frame header (shared/wire.hpp; magic "PGQ8", scheme 1 = minmax,
// 2 = sigma, block_size) then the blocks in order, each its parameters (minmax: f32 min, f32
// scale; sigma: 256 f32 bin means) followed by one code byte per value. Host byte order.
//
// Determinism: every kernel (AVX2 or scalar) does the same IEEE operations in the same order
// (no FMA contraction: the build passes -ffp-contract=off), blocks are independent, and threads
// split on block boundaries, so the bytes do not depend on the CPU or the thread count.
#include <cmath>
#include <cstdio>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../shared/wire.hpp"

namespace {

using pangea::compress::Error;
namespace wire = pangea::compress;

constexpr char kMagic[5] = "PGQ8";
constexpr uint8_t kVersion = 1;
constexpr uint8_t kMinMax = 1;
constexpr uint8_t kSigma = 2;
constexpr size_t kMinMaxParams = 2 * sizeof(float);
constexpr size_t kSigmaParams = 256 * sizeof(float);

// Where each block lies in a frame.
struct Layout {
    uint8_t scheme;
    size_t block;   // values per block (the last block may be shorter)
    size_t params;  // parameter bytes before each block's codes

    size_t blocks(size_t n) const { return (n + block - 1) / block; }
    size_t frame_size(size_t n) const { return sizeof(wire::FrameHeader) + blocks(n) * params + n; }
    size_t block_offset(size_t b) const { return sizeof(wire::FrameHeader) + b * (params + block); }
    size_t block_length(size_t b, size_t n) const { return std::min(block, n - b * block); }
};

Layout layout_for(uint8_t scheme, size_t block) {
    return {scheme, block, scheme == kMinMax ? kMinMaxParams : kSigmaParams};
}


// ---------------------------------------------------------------------------- minmax kernels

struct MinMaxParams {
    float offset;  // the block's minimum
    float scale;   // (max - min) / 255, or 0 for a constant block
    float inverse; // 255 / (max - min), or 0
};

std::string text(float value) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%g", static_cast<double>(value));
    return buffer;
}

// A block whose max - min overflows float cannot be scaled into 8 bits; such values are not a
// pseudo-gradient anyone should send.
void require_finite_range(float mn, float mx, size_t first_index) {
    if (!std::isfinite(mx - mn))
        throw Error(PANGEA_ERR_INVALID_DATA,
                    "int8: the block starting at value " + std::to_string(first_index) +
                        " spans more than the float range (" + text(mn) + " to " + text(mx) + ")");
}

MinMaxParams minmax_params(float mn, float mx, size_t first_index) {
    require_finite_range(mn, mx, first_index);
    const float range = mx - mn;
    mn += 0.0f;  // -0 becomes +0, so every kernel writes the same bytes
    const float inverse = 255.0f / range;
    // A range so small that its inverse overflows (below ~7.5e-37) is treated as a constant
    // block: every value reads back as the minimum, within the range of its true value.
    if (range == 0.0f || !std::isfinite(inverse)) return {mn, 0.0f, 0.0f};
    return {mn, range / 255.0f, inverse};
}

uint8_t quantize(float x, const MinMaxParams& p) {
    const long code = std::lrint((x - p.offset) * p.inverse);
    return static_cast<uint8_t>(std::clamp(code, 0L, 255L));
}

float dequantize(uint8_t code, float offset, float scale) {
    const float step = static_cast<float>(code) * scale;
    return offset + step;
}

void minmax_encode_scalar(const float* x, size_t len, size_t first_index, uint8_t* out) {
    float mn = x[0], mx = x[0];
    for (size_t i = 0; i < len; ++i) {
        if (!std::isfinite(x[i])) wire::throw_not_finite("int8", x, len, first_index);
        mn = std::min(mn, x[i]);
        mx = std::max(mx, x[i]);
    }
    const MinMaxParams p = minmax_params(mn, mx, first_index);
    std::memcpy(out, &p.offset, 4);
    std::memcpy(out + 4, &p.scale, 4);
    uint8_t* codes = out + kMinMaxParams;
    for (size_t i = 0; i < len; ++i) codes[i] = quantize(x[i], p);
}

template <bool kAccumulate>
void minmax_decode_scalar(const uint8_t* block, size_t len, float* dst) {
    float offset, scale;
    std::memcpy(&offset, block, 4);
    std::memcpy(&scale, block + 4, 4);
    const uint8_t* codes = block + kMinMaxParams;
    for (size_t i = 0; i < len; ++i) {
        const float value = dequantize(codes[i], offset, scale);
        if constexpr (kAccumulate)
            dst[i] += value;
        else
            dst[i] = value;
    }
}

#if defined(__x86_64__)
// The smallest and largest of the eight lanes of each vector.
__attribute__((target("avx2"))) void reduce_min_max(__m256 vmin, __m256 vmax, float* mn, float* mx) {
    alignas(32) float lanes_min[8], lanes_max[8];
    _mm256_store_ps(lanes_min, vmin);
    _mm256_store_ps(lanes_max, vmax);
    *mn = lanes_min[0];
    *mx = lanes_max[0];
    for (int k = 1; k < 8; ++k) {
        *mn = std::min(*mn, lanes_min[k]);
        *mx = std::max(*mx, lanes_max[k]);
    }
}

__attribute__((target("avx2"))) void minmax_encode_avx2(const float* x, size_t len,
                                                        size_t first_index, uint8_t* out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 largest = _mm256_set1_ps(std::numeric_limits<float>::max());
    __m256 vmin = _mm256_set1_ps(x[0]), vmax = vmin, bad = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        // |v| > FLT_MAX or unordered: Inf or NaN (min/max alone would drop a NaN).
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_andnot_ps(sign, v), largest, _CMP_NLE_UQ));
        vmin = _mm256_min_ps(vmin, v);
        vmax = _mm256_max_ps(vmax, v);
    }
    float mn, mx;
    reduce_min_max(vmin, vmax, &mn, &mx);
    bool any_bad = _mm256_movemask_ps(bad) != 0;
    for (; i < len; ++i) {
        any_bad |= !std::isfinite(x[i]);
        mn = std::min(mn, x[i]);
        mx = std::max(mx, x[i]);
    }
    if (any_bad) wire::throw_not_finite("int8", x, len, first_index);

    const MinMaxParams p = minmax_params(mn, mx, first_index);
    std::memcpy(out, &p.offset, 4);
    std::memcpy(out + 4, &p.scale, 4);
    uint8_t* codes = out + kMinMaxParams;
    const __m256 offset = _mm256_set1_ps(p.offset), inverse = _mm256_set1_ps(p.inverse);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256i q[4];
        for (int k = 0; k < 4; ++k) {
            const __m256 v = _mm256_loadu_ps(x + i + 8 * k);
            // cvtps rounds to nearest even, as lrint does in the default rounding mode.
            q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(v, offset), inverse));
        }
        // Saturating packs clamp to [0, 255] like the scalar clamp; the permute undoes the
        // per-128-bit-lane interleaving of the packs.
        const __m256i halves01 = _mm256_packs_epi32(q[0], q[1]);
        const __m256i halves23 = _mm256_packs_epi32(q[2], q[3]);
        const __m256i bytes = _mm256_packus_epi16(halves01, halves23);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i),
                            _mm256_permutevar8x32_epi32(bytes, order));
    }
    for (; i < len; ++i) codes[i] = quantize(x[i], p);
}

template <bool kAccumulate>
__attribute__((target("avx2"))) void minmax_decode_avx2(const uint8_t* block, size_t len,
                                                        float* dst) {
    float offset_value, scale_value;
    std::memcpy(&offset_value, block, 4);
    std::memcpy(&scale_value, block + 4, 4);
    const uint8_t* codes = block + kMinMaxParams;
    const __m256 offset = _mm256_set1_ps(offset_value), scale = _mm256_set1_ps(scale_value);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        const __m128i packed = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i));
        const __m256 code = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(packed));
        const __m256 value = _mm256_add_ps(offset, _mm256_mul_ps(code, scale));
        if constexpr (kAccumulate)
            _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), value));
        else
            _mm256_storeu_ps(dst + i, value);
    }
    for (; i < len; ++i) {
        const float value = dequantize(codes[i], offset_value, scale_value);
        if constexpr (kAccumulate)
            dst[i] += value;
        else
            dst[i] = value;
    }
}
#endif

// ---------------------------------------------------------------------------- sigma kernels
// The block's sums are kept in double in 8 lanes (value i goes to lane i % 8), added up in a
// fixed order, so the AVX2 and scalar kernels get the same bits. The 256-entry table of bin means
// needs a data-dependent scatter and is built by one shared scalar loop.

struct SigmaRange {
    float lo;       // the clipped range [lo, hi] cut into 256 bins
    float width;    // (hi - lo) / 256
    float inverse;  // 256 / (hi - lo), or 0 for a constant block
};

double add_lanes(const double (&lanes)[8]) {
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

SigmaRange sigma_range_from(float mn, float mx, double mean, double squares, size_t len, float clip,
                            size_t first_index) {
    require_finite_range(mn, mx, first_index);
    const double sigma = std::sqrt(squares / static_cast<double>(len));
    const float lo = static_cast<float>(std::max<double>(mn, mean - clip * sigma));
    const float hi = static_cast<float>(std::min<double>(mx, mean + clip * sigma));
    const float inverse = 256.0f / (hi - lo);
    if (!(hi > lo) || !std::isfinite(inverse)) return {lo, 0.0f, 0.0f};
    return {lo, (hi - lo) / 256.0f, inverse};
}

uint8_t sigma_code(float x, const SigmaRange& r) {
    const float position = std::floor((x - r.lo) * r.inverse);
    return static_cast<uint8_t>(std::clamp(position, 0.0f, 255.0f));
}

// The table: each bin's mean, or its centre when empty. Shared by both kernels.
void sigma_table(const float* x, const uint8_t* codes, size_t len, const SigmaRange& r, uint8_t* out) {
    double bin_sum[256] = {};
    uint32_t bin_count[256] = {};
    for (size_t i = 0; i < len; ++i) {
        bin_sum[codes[i]] += x[i];
        ++bin_count[codes[i]];
    }
    float table[256];
    for (int k = 0; k < 256; ++k) {
        table[k] = bin_count[k] > 0 ? static_cast<float>(bin_sum[k] / bin_count[k])
                                    : r.lo + (static_cast<float>(k) + 0.5f) * r.width;
        table[k] += 0.0f;  // no -0 on the wire
    }
    std::memcpy(out, table, sizeof table);
}

void sigma_encode_scalar(const float* x, size_t len, size_t first_index, float clip, uint8_t* out) {
    double sums[8] = {};
    float mn = x[0], mx = x[0];
    for (size_t i = 0; i < len; ++i) {
        if (!std::isfinite(x[i])) wire::throw_not_finite("int8", x, len, first_index);
        sums[i % 8] += x[i];
        mn = std::min(mn, x[i]);
        mx = std::max(mx, x[i]);
    }
    const double mean = add_lanes(sums) / static_cast<double>(len);
    double squares[8] = {};
    for (size_t i = 0; i < len; ++i) {
        const double d = static_cast<double>(x[i]) - mean;
        squares[i % 8] += d * d;
    }
    const SigmaRange r = sigma_range_from(mn, mx, mean, add_lanes(squares), len, clip, first_index);
    uint8_t* codes = out + kSigmaParams;
    for (size_t i = 0; i < len; ++i) codes[i] = sigma_code(x[i], r);
    sigma_table(x, codes, len, r, out);
}

template <bool kAccumulate>
void sigma_decode_scalar(const uint8_t* block, size_t len, float* dst) {
    float table[256];
    std::memcpy(table, block, sizeof table);
    const uint8_t* codes = block + kSigmaParams;
    for (size_t i = 0; i < len; ++i) {
        if constexpr (kAccumulate)
            dst[i] += table[codes[i]];
        else
            dst[i] = table[codes[i]];
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) void sigma_encode_avx2(const float* x, size_t len, size_t first_index,
                                                       float clip, uint8_t* out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 largest = _mm256_set1_ps(std::numeric_limits<float>::max());
    __m256 vmin = _mm256_set1_ps(x[0]), vmax = vmin, bad = _mm256_setzero_ps();
    __m256d sum_low = _mm256_setzero_pd(), sum_high = _mm256_setzero_pd();  // lanes 0-3, 4-7
    const size_t whole = len / 8 * 8;
    for (size_t i = 0; i < whole; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_andnot_ps(sign, v), largest, _CMP_NLE_UQ));
        vmin = _mm256_min_ps(vmin, v);
        vmax = _mm256_max_ps(vmax, v);
        sum_low = _mm256_add_pd(sum_low, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        sum_high = _mm256_add_pd(sum_high, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    if (_mm256_movemask_ps(bad) != 0) wire::throw_not_finite("int8", x, len, first_index);
    alignas(32) double sums[8];
    _mm256_store_pd(sums, sum_low);
    _mm256_store_pd(sums + 4, sum_high);
    float mn, mx;
    reduce_min_max(vmin, vmax, &mn, &mx);
    for (size_t i = whole; i < len; ++i) {
        if (!std::isfinite(x[i])) wire::throw_not_finite("int8", x, len, first_index);
        sums[i % 8] += x[i];
        mn = std::min(mn, x[i]);
        mx = std::max(mx, x[i]);
    }
    const double mean = add_lanes(sums) / static_cast<double>(len);

    const __m256d mean_v = _mm256_set1_pd(mean);
    __m256d sq_low = _mm256_setzero_pd(), sq_high = _mm256_setzero_pd();
    for (size_t i = 0; i < whole; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256d d_low = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), mean_v);
        const __m256d d_high = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), mean_v);
        sq_low = _mm256_add_pd(sq_low, _mm256_mul_pd(d_low, d_low));
        sq_high = _mm256_add_pd(sq_high, _mm256_mul_pd(d_high, d_high));
    }
    alignas(32) double squares[8];
    _mm256_store_pd(squares, sq_low);
    _mm256_store_pd(squares + 4, sq_high);
    for (size_t i = whole; i < len; ++i) {
        const double d = static_cast<double>(x[i]) - mean;
        squares[i % 8] += d * d;
    }
    const SigmaRange r = sigma_range_from(mn, mx, mean, add_lanes(squares), len, clip, first_index);

    uint8_t* codes = out + kSigmaParams;
    const __m256 lo = _mm256_set1_ps(r.lo), inverse = _mm256_set1_ps(r.inverse);
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256i q[4];
        for (int k = 0; k < 4; ++k) {
            const __m256 v = _mm256_loadu_ps(x + i + 8 * k);
            const __m256 position = _mm256_floor_ps(_mm256_mul_ps(_mm256_sub_ps(v, lo), inverse));
            q[k] = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(position, zero), top));
        }
        const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), _mm256_permutevar8x32_epi32(bytes, order));
    }
    for (; i < len; ++i) codes[i] = sigma_code(x[i], r);
    sigma_table(x, codes, len, r, out);
}

template <bool kAccumulate>
__attribute__((target("avx2"))) void sigma_decode_avx2(const uint8_t* block, size_t len, float* dst) {
    alignas(32) float table[256];
    std::memcpy(table, block, sizeof table);
    const uint8_t* codes = block + kSigmaParams;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        const __m128i packed = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i));
        const __m256 value = _mm256_i32gather_ps(table, _mm256_cvtepu8_epi32(packed), 4);
        if constexpr (kAccumulate)
            _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), value));
        else
            _mm256_storeu_ps(dst + i, value);
    }
    for (; i < len; ++i) {
        if constexpr (kAccumulate)
            dst[i] += table[codes[i]];
        else
            dst[i] = table[codes[i]];
    }
}
#endif

// ---------------------------------------------------------------------------- the plugin

class Int8Compressor final : public pangea::sdk::Compressor {
public:
    static constexpr const char* name = "int8";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description =
        "blockwise 8-bit quantization: minmax (scale and offset per block) or sigma (clipped, "
        "with a 256-entry table of bin means per block)";
    static std::vector<pangea_setting> settings() {
        using namespace pangea::sdk;
        return {
            string_setting("scheme", "minmax", "quantization scheme", "minmax|sigma"),
            int_setting("block_size", "0",
                        "values per block, each with its own range (0: 1024 for minmax, 65536 "
                        "for sigma)",
                        0, 16777216),
            float_setting("clip_sigma", "3", "sigma scheme: clip each block to mean +- this many "
                          "standard deviations", 0.5, 64),
            int_setting("threads", "1", "threads per call for buffers of 256K values or more", 1, 256),
            string_setting("kernel", "auto", "auto picks AVX2 where the CPU has it", "auto|avx2|scalar"),
        };
    }

    explicit Int8Compressor(const pangea::sdk::Host& host)
        : scheme_(host.get_string("scheme") == "sigma" ? kSigma : kMinMax),
          clip_(static_cast<float>(host.get_float("clip_sigma"))),
          threads_(static_cast<unsigned>(host.get_int("threads"))) {
        int64_t block = host.get_int("block_size");
        if (block == 0) block = scheme_ == kMinMax ? 1024 : 65536;
        if (block < 16)
            throw Error(PANGEA_ERR_CONFIG, "block_size " + std::to_string(block) +
                                               " is too small: use 0 (automatic) or at least 16");
        layout_ = layout_for(scheme_, static_cast<size_t>(block));
        const std::string kernel = host.get_string("kernel");
        if (kernel == "avx2" && !wire::cpu_has_avx2())
            throw Error(PANGEA_ERR_CONFIG, "kernel = \"avx2\" but this CPU lacks AVX2");
        avx2_ = kernel != "scalar" && wire::cpu_has_avx2();
    }

    size_t max_encoded_size(size_t n) override {
        return n > wire::kMaxValues ? SIZE_MAX : layout_.frame_size(n);
    }

    void encode(const float* src, size_t n, uint8_t* dst, size_t capacity, size_t* written) override {
        if ((src == nullptr && n > 0) || dst == nullptr || written == nullptr)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "int8: encode got a NULL pointer");
        wire::require_count(n, "int8");
        const size_t bytes = layout_.frame_size(n);
        wire::require_capacity(bytes, capacity, "int8");
        wire::write_header(dst, kMagic, kVersion, scheme_, static_cast<uint32_t>(layout_.block), n);
        for_blocks(layout_, n, [&](size_t b) {
            const size_t first = b * layout_.block;
            const size_t len = layout_.block_length(b, n);
            uint8_t* out = dst + layout_.block_offset(b);
#if defined(__x86_64__)
            if (avx2_) {
                if (scheme_ == kSigma)
                    sigma_encode_avx2(src + first, len, first, clip_, out);
                else
                    minmax_encode_avx2(src + first, len, first, out);
                return;
            }
#endif
            if (scheme_ == kSigma)
                sigma_encode_scalar(src + first, len, first, clip_, out);
            else
                minmax_encode_scalar(src + first, len, first, out);
        });
        *written = bytes;
    }

    void decode(const uint8_t* src, size_t bytes, float* dst, size_t n) override {
        decode_into<false>(src, bytes, dst, n);
    }

    void decode_accumulate(const uint8_t* src, size_t bytes, float* acc, size_t n) override {
        decode_into<true>(src, bytes, acc, n);
    }

    uint64_t capabilities() override { return PANGEA_COMPRESS_CAP_ERROR_FEEDBACK; }

private:
    template <class Body>
    void for_blocks(const Layout& layout, size_t n, const Body& body) const {
        const size_t blocks = layout.blocks(n);
        const unsigned threads = n >= wire::kParallelThreshold ? threads_ : 1;
        wire::parallel_ranges(blocks, threads, [&](size_t first, size_t last) {
            for (size_t b = first; b < last; ++b) body(b);
        });
    }

    // Checks everything about a frame before a single value is written, so a corrupt frame
    // leaves the destination untouched.
    Layout validate(const uint8_t* src, size_t bytes, size_t n) const {
        wire::require_count(n, "int8");
        const wire::FrameHeader header = wire::read_header(src, bytes, kMagic, kVersion, n, "int8");
        if (header.scheme != kMinMax && header.scheme != kSigma)
            throw Error(PANGEA_ERR_CORRUPT, "int8: unknown scheme " + std::to_string(header.scheme));
        if (header.block_size < 16)
            throw Error(PANGEA_ERR_CORRUPT, "int8: block size " +
                                                std::to_string(header.block_size) + " in the frame");
        const Layout layout = layout_for(header.scheme, header.block_size);
        wire::require_size(bytes, layout.frame_size(n), "int8");
        const size_t floats = layout.params / sizeof(float);
        for (size_t b = 0; b < layout.blocks(n); ++b) {
            const uint8_t* params = src + layout.block_offset(b);
            for (size_t k = 0; k < floats; ++k) {
                float value;
                std::memcpy(&value, params + k * sizeof(float), sizeof value);
                if (!std::isfinite(value) || (header.scheme == kMinMax && k == 1 && value < 0))
                    throw Error(PANGEA_ERR_CORRUPT, "int8: block " + std::to_string(b) +
                                                        " has an invalid parameter (" +
                                                        std::to_string(value) + ")");
            }
            if (header.scheme == kMinMax) {  // the largest code must decode to a finite value too
                float offset, scale;
                std::memcpy(&offset, params, 4);
                std::memcpy(&scale, params + 4, 4);
                if (!std::isfinite(dequantize(255, offset, scale)))
                    throw Error(PANGEA_ERR_CORRUPT, "int8: block " + std::to_string(b) +
                                                        " decodes past the float range");
            }
        }
        return layout;
    }

    template <bool kAccumulate>
    void decode_into(const uint8_t* src, size_t bytes, float* dst, size_t n) {
        const Layout layout = validate(src, bytes, n);
        if (n > 0 && dst == nullptr)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "int8: decode got a NULL destination");
        for_blocks(layout, n, [&](size_t b) {
            const uint8_t* block = src + layout.block_offset(b);
            const size_t len = layout.block_length(b, n);
            float* out = dst + b * layout.block;
#if defined(__x86_64__)
            if (avx2_) {
                if (layout.scheme == kSigma)
                    sigma_decode_avx2<kAccumulate>(block, len, out);
                else
                    minmax_decode_avx2<kAccumulate>(block, len, out);
                return;
            }
#endif
            if (layout.scheme == kSigma)
                sigma_decode_scalar<kAccumulate>(block, len, out);
            else
                minmax_decode_scalar<kAccumulate>(block, len, out);
        });
    }

    uint8_t scheme_;
    float clip_;
    unsigned threads_;
    Layout layout_{};
    bool avx2_ = false;
};

}  // namespace

PANGEA_EXPORT_PLUGINS(Int8Compressor)
