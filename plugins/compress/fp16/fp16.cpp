// compress/fp16: 16-bit floats on the wire, IEEE half precision (format = "fp16") or bfloat16
// (format = "bf16"). Both round to nearest even. Values beyond the format's largest finite value
// saturate to it (fp16: +-65504; bf16: +-3.3895e38); saturations are counted and reported in the
// host log. NaN and Inf are refused (PANGEA_ERR_INVALID_DATA).
//
// Wire format: the 24-byte frame header (shared/wire.hpp; magic "PG16", scheme 1 = fp16,
// 2 = bf16, block_size 0) then one 16-bit word per value, host byte order. A frame holding a
// NaN or Inf word is corrupt: the encoder never writes one.
//
// Determinism: the AVX2/F16C and scalar kernels give the same bits (conversion is exact rounding,
// independent of the order of operations), and threads split the values into ranges.
#include <atomic>
#include <bit>
#include <cmath>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../shared/wire.hpp"

namespace {

using pangea::compress::Error;
namespace wire = pangea::compress;

constexpr char kMagic[5] = "PG16";
constexpr uint8_t kVersion = 1;
constexpr uint8_t kHalf = 1;
constexpr uint8_t kBfloat = 2;
constexpr float kHalfMax = 65504.0f;

uint32_t bits_of(float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
}
float float_of(uint32_t bits) {
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

// ---------------------------------------------------------------------------- scalar conversions

// Rounds a finite float with |value| <= 65504 to the nearest half (ties to even).
uint16_t half_from_float(float value) {
    const uint32_t x = bits_of(value);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t magnitude = x & 0x7fffffffu;
    if (magnitude >= 0x38800000u) {  // a normal half (>= 2^-14): rebias, round 13 bits away
        uint32_t half = (magnitude - 0x38000000u) >> 13;
        const uint32_t rest = magnitude & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry: still right
        return static_cast<uint16_t>(sign | half);
    }
    if (magnitude < 0x33000000u) return static_cast<uint16_t>(sign);  // below 2^-25: zero
    // A subnormal half: the value in units of 2^-24 is the float's mantissa shifted right.
    const uint32_t exponent = magnitude >> 23;
    const uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exponent;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
}

// Exact; the caller has rejected NaN and Inf words.
float float_from_half(uint16_t half) {
    const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
    const uint32_t exponent = (half >> 10) & 0x1fu;
    const uint32_t mantissa = half & 0x3ffu;
    if (exponent == 0)  // zero or subnormal: mantissa * 2^-24, exact in float
        return float_of(sign | bits_of(static_cast<float>(mantissa) * 5.9604644775390625e-8f));
    return float_of(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// Rounds a finite float to the nearest bfloat16 (ties to even); *saturated is set when the
// result would be infinite, and the largest finite bfloat16 of that sign is returned instead.
uint16_t bfloat_from_float(float value, bool* saturated) {
    const uint32_t x = bits_of(value);
    const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    *saturated = (rounded & 0x7f80u) == 0x7f80u;
    return static_cast<uint16_t>(*saturated ? (rounded & 0x8000u) | 0x7f7fu : rounded);
}

float float_from_bfloat(uint16_t word) { return float_of(static_cast<uint32_t>(word) << 16); }

// Frames may sit at any address, so words are read and written through memcpy.
uint16_t load_word(const uint8_t* words, size_t i) {
    uint16_t word;
    std::memcpy(&word, words + 2 * i, sizeof word);
    return word;
}
void store_word(uint8_t* words, size_t i, uint16_t word) { std::memcpy(words + 2 * i, &word, sizeof word); }

// ---------------------------------------------------------------------------- kernels
// Each encodes values [0, n) of src into words and returns how many saturated; a non-finite
// value throws. Each decode writes (or adds) n values.


size_t encode_scalar(uint8_t format, const float* src, size_t n, size_t first_index, uint8_t* out) {
    size_t saturated = 0;
    for (size_t i = 0; i < n; ++i) {
        float value = src[i];
        if (!std::isfinite(value)) wire::throw_not_finite("fp16", src, n, first_index);
        if (format == kHalf) {
            if (std::fabs(value) > kHalfMax) {
                value = std::copysign(kHalfMax, value);
                ++saturated;
            }
            store_word(out, i, half_from_float(value));
        } else {
            bool clipped = false;
            store_word(out, i, bfloat_from_float(value, &clipped));
            saturated += clipped;
        }
    }
    return saturated;
}

template <bool kAccumulate>
void decode_scalar(uint8_t format, const uint8_t* words, size_t n, float* dst) {
    for (size_t i = 0; i < n; ++i) {
        const uint16_t word = load_word(words, i);
        const float value = format == kHalf ? float_from_half(word) : float_from_bfloat(word);
        if constexpr (kAccumulate)
            dst[i] += value;
        else
            dst[i] = value;
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) size_t encode_avx2(uint8_t format, const float* src, size_t n,
                                                        size_t first_index, uint8_t* out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 largest = _mm256_set1_ps(std::numeric_limits<float>::max());
    const __m256 half_max = _mm256_set1_ps(kHalfMax);
    __m256 bad = _mm256_setzero_ps();
    size_t saturated = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(src + i);
        const __m256 magnitude = _mm256_andnot_ps(sign, v);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(magnitude, largest, _CMP_NLE_UQ));
        __m128i words;
        if (format == kHalf) {
            const __m256 over = _mm256_cmp_ps(magnitude, half_max, _CMP_GT_OQ);
            saturated += static_cast<size_t>(__builtin_popcount(_mm256_movemask_ps(over)));
            const __m256 clamped = _mm256_or_ps(_mm256_min_ps(magnitude, half_max), _mm256_and_ps(sign, v));
            words = _mm256_cvtps_ph(clamped, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        } else {
            const __m256i x = _mm256_castps_si256(v);
            const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
            __m256i rounded = _mm256_srli_epi32(
                _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
            const __m256i exponent = _mm256_and_si256(rounded, _mm256_set1_epi32(0x7f80));
            const __m256i over = _mm256_cmpeq_epi32(exponent, _mm256_set1_epi32(0x7f80));
            saturated += static_cast<size_t>(
                __builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(over))));
            const __m256i clipped = _mm256_or_si256(_mm256_and_si256(rounded, _mm256_set1_epi32(0x8000)),
                                                    _mm256_set1_epi32(0x7f7f));
            rounded = _mm256_blendv_epi8(rounded, clipped, over);
            // 32 -> 16 bits (values are < 65536, so the saturating pack is exact).
            const __m256i packed = _mm256_packus_epi32(rounded, rounded);
            words = _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
        }
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), words);
    }
    if (_mm256_movemask_ps(bad) != 0) wire::throw_not_finite("fp16", src, n, first_index);
    return saturated + encode_scalar(format, src + i, n - i, first_index + i, out + 2 * i);
}

template <bool kAccumulate>
__attribute__((target("avx2,f16c"))) void decode_avx2(uint8_t format, const uint8_t* words,
                                                      size_t n, float* dst) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(words + 2 * i));
        const __m256 value =
            format == kHalf ? _mm256_cvtph_ps(packed)
                            : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(packed), 16));
        if constexpr (kAccumulate)
            _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), value));
        else
            _mm256_storeu_ps(dst + i, value);
    }
    decode_scalar<kAccumulate>(format, words + 2 * i, n - i, dst + i);
}
#endif

// Whether any word is a NaN or Inf of the format (the encoder never writes one).
bool has_non_finite_word_scalar(uint8_t format, const uint8_t* words, size_t n) {
    const uint16_t mask = format == kHalf ? 0x7c00u : 0x7f80u;
    bool any = false;
    for (size_t i = 0; i < n; ++i) any |= (load_word(words, i) & mask) == mask;
    return any;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) bool has_non_finite_word_avx2(uint8_t format, const uint8_t* words,
                                                              size_t n) {
    const __m256i mask = _mm256_set1_epi16(static_cast<short>(format == kHalf ? 0x7c00 : 0x7f80));
    __m256i any = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + 2 * i));
        any = _mm256_or_si256(any, _mm256_cmpeq_epi16(_mm256_and_si256(v, mask), mask));
    }
    return !_mm256_testz_si256(any, any) || has_non_finite_word_scalar(format, words + 2 * i, n - i);
}
#endif

// ---------------------------------------------------------------------------- the plugin

class Fp16Compressor final : public pangea::sdk::Compressor {
public:
    static constexpr const char* name = "fp16";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description =
        "16-bit floats: IEEE half (fp16) or bfloat16, round to nearest even, saturating";
    static std::vector<pangea_setting> settings() {
        using namespace pangea::sdk;
        return {
            string_setting("format", "fp16", "fp16: 11-bit precision, range +-65504; bf16: 8-bit "
                           "precision, the range of fp32", "fp16|bf16"),
            int_setting("threads", "1", "threads per call for buffers of 256K values or more", 1, 256),
            string_setting("kernel", "auto", "auto picks AVX2/F16C where the CPU has it", "auto|avx2|scalar"),
        };
    }

    explicit Fp16Compressor(const pangea::sdk::Host& host)
        : host_(host),
          format_(host.get_string("format") == "bf16" ? kBfloat : kHalf),
          threads_(static_cast<unsigned>(host.get_int("threads"))) {
        const std::string kernel = host.get_string("kernel");
        if (kernel == "avx2" && !wire::cpu_has_avx2())
            throw Error(PANGEA_ERR_CONFIG, "kernel = \"avx2\" but this CPU lacks AVX2/F16C");
        avx2_ = kernel != "scalar" && wire::cpu_has_avx2();
    }

    size_t max_encoded_size(size_t n) override {
        return n > wire::kMaxValues ? SIZE_MAX : sizeof(wire::FrameHeader) + 2 * n;
    }

    void encode(const float* src, size_t n, uint8_t* dst, size_t capacity, size_t* written) override {
        if ((src == nullptr && n > 0) || dst == nullptr || written == nullptr)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "fp16: encode got a NULL pointer");
        wire::require_count(n, "fp16");
        const size_t bytes = max_encoded_size(n);
        wire::require_capacity(bytes, capacity, "fp16");
        wire::write_header(dst, kMagic, kVersion, format_, 0, n);
        uint8_t* words = dst + sizeof(wire::FrameHeader);
        std::atomic<size_t> saturated{0};
        for_ranges(n, [&](size_t first, size_t last) {
            size_t count;
#if defined(__x86_64__)
            if (avx2_)
                count = encode_avx2(format_, src + first, last - first, first, words + 2 * first);
            else
#endif
                count = encode_scalar(format_, src + first, last - first, first, words + 2 * first);
            saturated += count;
        });
        report_saturation(saturated.load(), n);
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
    void for_ranges(size_t n, const Body& body) const {
        const unsigned threads = n >= wire::kParallelThreshold ? threads_ : 1;
        // Split on multiples of 8 values so the vector loops see whole vectors.
        const size_t groups = (n + 7) / 8;
        wire::parallel_ranges(groups, threads, [&](size_t first, size_t last) {
            body(first * 8, std::min(last * 8, n));
        });
    }

    template <bool kAccumulate>
    void decode_into(const uint8_t* src, size_t bytes, float* dst, size_t n) {
        wire::require_count(n, "fp16");
        const wire::FrameHeader header = wire::read_header(src, bytes, kMagic, kVersion, n, "fp16");
        if (header.scheme != kHalf && header.scheme != kBfloat)
            throw Error(PANGEA_ERR_CORRUPT, "fp16: unknown format " + std::to_string(header.scheme));
        if (header.block_size != 0) throw Error(PANGEA_ERR_CORRUPT, "fp16: block size field is not zero");
        wire::require_size(bytes, max_encoded_size(n), "fp16");
        if (n > 0 && dst == nullptr)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "fp16: decode got a NULL destination");
        const uint8_t* words = src + sizeof(wire::FrameHeader);
#if defined(__x86_64__)
        const bool bad = avx2_ ? has_non_finite_word_avx2(header.scheme, words, n)
                               : has_non_finite_word_scalar(header.scheme, words, n);
#else
        const bool bad = has_non_finite_word_scalar(header.scheme, words, n);
#endif
        if (bad)
            throw Error(PANGEA_ERR_CORRUPT, "fp16: the frame holds a NaN or Inf word");
        for_ranges(n, [&](size_t first, size_t last) {
#if defined(__x86_64__)
            if (avx2_)
                decode_avx2<kAccumulate>(header.scheme, words + 2 * first, last - first, dst + first);
            else
#endif
                decode_scalar<kAccumulate>(header.scheme, words + 2 * first, last - first, dst + first);
        });
    }

    // Logs when the running count of saturated values passes a power of two: visible, not a
    // line per chunk.
    void report_saturation(size_t count, size_t n) {
        if (count == 0) return;
        const uint64_t before = saturated_total_;
        saturated_total_ += count;
        if (before != 0 && (std::bit_width(before) == std::bit_width(saturated_total_))) return;
        host_.log(PANGEA_LOG_WARN,
                  std::to_string(count) + " of " + std::to_string(n) + " values exceeded the " +
                      (format_ == kHalf ? "fp16 range (+-65504)" : "bf16 range") +
                      " and were saturated in this encode; " + std::to_string(saturated_total_) +
                      " so far");
    }

    pangea::sdk::Host host_;
    uint8_t format_;
    unsigned threads_;
    bool avx2_ = false;
    uint64_t saturated_total_ = 0;
};

}  // namespace

PANGEA_EXPORT_PLUGINS(Fp16Compressor)
