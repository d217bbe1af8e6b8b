// compress/fp4: 4-bit floats with one scale per block of values.
//
// Each value becomes a sign bit and a 3-bit magnitude code; each block of `block_size` values
// shares the block's largest magnitude, absmax, from which the 8 magnitudes follow:
// - e2m1 (default; OCP MX FP4): magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6} * scale, scale = absmax / 6.
// - e3m0: sign and a 3-bit exponent, no mantissa: code 0 is 0, code e (1..7) is 2^(e-7) * scale,
//   scale = absmax; the levels are absmax * {0, 1/64, 1/32, 1/16, 1/8, 1/4, 1/2, 1}.
//
// The frame stores each block's absmax itself (an exact fp32), not a rounded scale: a block's
// table of magnitudes is fp32(level * absmax), computed in double, so a block of tiny values keeps
// as much precision as fp32 has for them, and absmax itself reads back exactly.
//
// Rounding: a value gets the table entry nearest to it (compared exactly, in double, against the
// midpoints between consecutive entries); a value exactly halfway goes to the even code (for e2m1
// that is IEEE round-half-even on the mantissa bit, as OCP MX does; for e3m0 the even exponent).
// Equal entries (tiny blocks, whose fp32 table has fewer distinct values) take the lowest code, and
// a value whose magnitude code is 0 has no sign, so zero is always the nibble 0.
//
// Wire format: the 24-byte frame header (shared/wire.hpp; magic "PGF4", scheme 1 = e2m1,
// 2 = e3m0, block_size), then ceil(n / block_size) f32 absmax values (non-negative, finite), then
// ceil(n / 2) code bytes: value i is in byte i / 2, the low nibble for even i, the high nibble for
// odd i; a nibble is sign << 3 | magnitude code. With n odd the last high nibble is 0. Host order.
// The encoder never writes the nibble 8 (a signed zero); a decoder reads it as 0.
//
// Determinism: every step is IEEE arithmetic in a fixed order on one thread (the build passes
// -ffp-contract=off), so the bytes are the same on every machine and run.
#include <cmath>
#include <limits>
#include <utility>

#include "../shared/wire.hpp"

namespace {

using pangea::compress::Error;
namespace wire = pangea::compress;

constexpr char kMagic[5] = "PGF4";
constexpr uint8_t kVersion = 1;
constexpr uint8_t kE2M1 = 1;
constexpr uint8_t kE3M0 = 2;
constexpr uint32_t kMinBlock = 8;
constexpr uint32_t kMaxBlock = 1u << 24;

// The 8 magnitudes of a format as exact fractions of the block's absmax: level[c] / divisor.
struct Levels {
    double level[8];
    double divisor;
};
constexpr Levels kE2M1Levels = {{0, 0.5, 1, 1.5, 2, 3, 4, 6}, 6};
constexpr Levels kE3M0Levels = {{0, 1.0 / 64, 1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0 / 2, 1}, 1};

const Levels& levels_of(uint8_t format) { return format == kE3M0 ? kE3M0Levels : kE2M1Levels; }

// A block's 8 magnitudes, the same bits for encoder and decoder. level * absmax is exact in double
// (at most 27 significant bits); the e2m1 division by 6 rounds once in double, then to fp32.
void block_magnitudes(const Levels& levels, float absmax, float (&magnitude)[8]) {
    for (int c = 0; c < 8; ++c)
        magnitude[c] = static_cast<float>(levels.level[c] * static_cast<double>(absmax) / levels.divisor);
}

// Layout of a frame of n values with blocks of `block` values.
struct Layout {
    size_t block;
    size_t blocks(size_t n) const { return (n + block - 1) / block; }
    size_t codes_offset(size_t n) const { return sizeof(wire::FrameHeader) + blocks(n) * sizeof(float); }
    size_t frame_size(size_t n) const { return codes_offset(n) + (n + 1) / 2; }
};

// Encodes one block: returns its absmax and writes its nibbles into codes (the frame's code
// bytes). An even value's nibble starts its byte and an odd one's completes it; blocks go in
// order, so a byte is whole once both are in (and no byte is read before it is written).
float encode_block(const Levels& levels, const float* x, size_t len, size_t first, uint8_t* codes) {
    float absmax = 0.0f;
    for (size_t i = 0; i < len; ++i) {
        if (!std::isfinite(x[i])) wire::throw_not_finite("fp4", x, len, first);
        absmax = std::max(absmax, std::fabs(x[i]));
    }
    float magnitude[8];
    block_magnitudes(levels, absmax, magnitude);
    // Midpoints of consecutive entries: the sum of two floats within a factor 2 of each other (or
    // one of them 0) is exact in double, and so is the halving, so comparisons with them decide
    // "nearest" exactly.
    double midpoint[7];
    for (int c = 0; c < 7; ++c) midpoint[c] = (double(magnitude[c]) + double(magnitude[c + 1])) / 2;

    for (size_t i = 0; i < len; ++i) {
        const double a = std::fabs(static_cast<double>(x[i]));
        unsigned code = 0;
        for (unsigned c = 0; c < 7; ++c)  // halfway between c and c + 1: to whichever is even
            code += (c % 2 == 1) ? (a >= midpoint[c]) : (a > midpoint[c]);
        while (code > 0 && magnitude[code - 1] == magnitude[code]) --code;  // lowest equal code
        const unsigned nibble = code | (code != 0 && x[i] < 0 ? 8u : 0u);
        const size_t at = first + i;
        if (at % 2 == 0)
            codes[at / 2] = static_cast<uint8_t>(nibble);
        else
            codes[at / 2] = static_cast<uint8_t>(codes[at / 2] | (nibble << 4));
    }
    return absmax;
}

template <bool kAccumulate>
void decode_block(const Levels& levels, float absmax, const uint8_t* codes, size_t first, size_t len,
                  float* dst) {
    float magnitude[8];
    block_magnitudes(levels, absmax, magnitude);
    float table[16];
    for (int c = 0; c < 8; ++c) {
        table[c] = magnitude[c];
        table[8 + c] = -magnitude[c];
    }
    table[8] = 0.0f;  // never written; read as 0, not -0
    for (size_t i = 0; i < len; ++i) {
        const size_t at = first + i;
        const float value = table[(codes[at / 2] >> (4 * (at % 2))) & 0x0fu];
        if constexpr (kAccumulate)
            dst[i] += value;
        else
            dst[i] = value;
    }
}

// The relative L2 error promised for blocks of `block` values; error_bound() has the proof.
double bound_for(const Levels& levels, size_t block) {
    const double others = static_cast<double>(block - 1);
    // Exact levels: the largest (B-1) e^2 / (1 + (B-1) t^2) over the peaks t of e (absmax 1).
    double worst = 0;
    for (int c = 0; c < 7; ++c) {
        const double lo = levels.level[c] / levels.divisor, hi = levels.level[c + 1] / levels.divisor;
        const double t = (lo + hi) / 2, e = (hi - lo) / 2;
        worst = std::max(worst, others * e * e / (1 + others * t * t));
    }
    const double exact = std::sqrt(worst);
    // Normal absmax: the fp32 table is off by at most 2^-23 of absmax, which adds at most
    // sqrt(B-1) 2^-23. The margin taken, sqrt(B-1) 2^-12, is larger so that the search below ends
    // within 2^11 steps; it only shows where subnormal blocks do not set the bound anyway.
    double bound = exact + std::sqrt(others) * std::ldexp(1.0, -12);
    // Subnormal absmax j * 2^-149: the table's entries are multiples of 2^-149, off by up to half
    // of one, which matters most for small j. Try each j (its worst value is a multiple of 2^-149
    // next to a midpoint of the table) until the rest, within exact + sqrt(B-1) 0.51 / j, cannot
    // exceed the bound: about 50 j at the default block size.
    const double unit = static_cast<double>(std::numeric_limits<float>::denorm_min());
    for (uint32_t j = 1; j < (1u << 23) && bound < 1; ++j) {
        if (exact + std::sqrt(others) * 0.51 / j <= bound) break;
        float absmax;
        std::memcpy(&absmax, &j, sizeof absmax);
        float magnitude[8];
        block_magnitudes(levels, absmax, magnitude);
        for (int c = 0; c < 7; ++c) {
            const double midpoint = (double(magnitude[c]) + double(magnitude[c + 1])) / 2 / unit;
            for (const double units : {std::floor(midpoint), std::ceil(midpoint)}) {
                const double a = units * unit;
                double e = a;
                for (float m : magnitude) e = std::min(e, std::fabs(a - double(m)));
                const double ratio = others * e * e / (double(absmax) * absmax + others * a * a);
                bound = std::max(bound, std::sqrt(ratio));
            }
        }
    }
    return std::min(1.0, bound + 1e-9);
}

class Fp4Compressor final : public pangea::sdk::Compressor {
public:
    static constexpr const char* name = "fp4";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description =
        "4-bit floats (e2m1 or e3m0) with the largest magnitude of each block as its fp32 scale; "
        "about 4.5 bits per value";
    static std::vector<pangea_setting> settings() {
        using namespace pangea::sdk;
        return {
            string_setting("format", "e2m1",
                           "e2m1: {0,0.5,1,1.5,2,3,4,6} x absmax/6; e3m0: 0 and 2^-6..1 x absmax", "e2m1|e3m0"),
            int_setting("block_size", "64", "values per block, each with its own fp32 absmax (8 to 16777216)",
                        kMinBlock, kMaxBlock),
        };
    }

    explicit Fp4Compressor(const pangea::sdk::Host& host)
        : format_(host.get_string("format") == "e3m0" ? kE3M0 : kE2M1) {
        const int64_t block = host.get_int("block_size");
        if (block < kMinBlock || block > kMaxBlock)
            throw Error(PANGEA_ERR_CONFIG, "fp4: block_size " + std::to_string(block) + " is outside 8 to 16777216");
        layout_ = {static_cast<size_t>(block)};
        bound_ = bound_for(levels_of(format_), layout_.block);
    }

    size_t max_encoded_size(size_t n) override { return n > wire::kMaxValues ? SIZE_MAX : layout_.frame_size(n); }

    void encode(const float* src, size_t n, uint8_t* dst, size_t capacity, size_t* written) override {
        if ((src == nullptr && n > 0) || dst == nullptr || written == nullptr)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "fp4: encode got a NULL pointer");
        wire::require_count(n, "fp4");
        const size_t bytes = layout_.frame_size(n);
        wire::require_capacity(bytes, capacity, "fp4");
        wire::write_header(dst, kMagic, kVersion, format_, static_cast<uint32_t>(layout_.block), n);
        uint8_t* codes = dst + layout_.codes_offset(n);
        const Levels& levels = levels_of(format_);
        for (size_t b = 0; b < layout_.blocks(n); ++b) {
            const size_t first = b * layout_.block;
            const float absmax =
                encode_block(levels, src + first, std::min(layout_.block, n - first), first, codes);
            std::memcpy(dst + sizeof(wire::FrameHeader) + b * sizeof(float), &absmax, sizeof absmax);
        }
        *written = bytes;
    }

    void decode(const uint8_t* src, size_t bytes, float* dst, size_t n) override {
        decode_into<false>(src, bytes, dst, n);
    }
    void decode_accumulate(const uint8_t* src, size_t bytes, float* acc, size_t n) override {
        decode_into<true>(src, bytes, acc, n);
    }

    // Ring aggregation (the default): fp4 is re-encoded at every hop; the host may also gather.
    uint64_t capabilities() override { return PANGEA_COMPRESS_CAP_ERROR_FEEDBACK; }

    // Why this holds for any finite input. Take one block, absmax A > 0, and write E(a) for the
    // distance from a magnitude a to the nearest table entry (what the encoder picks). The entry
    // for A is A itself, so the block's largest value has no error; for each of the other (at most
    // B - 1) values, by the definition of R below,
    //     E(a)^2 <= R^2 (A^2 / (B-1) + a^2),   R^2 = max over a in [0, A] of (B-1) E(a)^2 / (A^2 + (B-1) a^2),
    // and summing gives: block error^2 <= R^2 (A^2 + sum of the others' a^2) = R^2 * block energy.
    // Summed over blocks, the relative L2 error is at most R. Between two neighbouring entries E
    // rises with slope 1 to their midpoint and falls after it; the ratio grows while E rises (its
    // derivative has the sign of A^2 / (B-1) + a * lower entry > 0) and shrinks while E falls, so
    // its maximum sits at a midpoint. With exact levels that gives `exact` in bound_for(). The fp32
    // table differs from exact levels by at most 2^-23 A when A is a normal float (a subnormal
    // entry's error, at most 2^-150, is below 2^-24 A for A >= 2^-126), which adds at most
    // sqrt(B-1) 2^-23 to R (bound_for() allows more). A subnormal A = j 2^-149 makes every value
    // and entry a multiple of 2^-149; there the entries are off by up to half of one, so
    // bound_for() takes each j in turn (the worst a is then a multiple of 2^-149 beside a
    // midpoint) until the remaining j's shortfall, at most sqrt(B-1) 0.51 / j, fits under what it
    // has. Whatever the block, E(a) <= a (0 is an entry), so the bound never needs to exceed 1.
    // B = 64: the exact levels give 0.314 (e2m1: one value at absmax, the rest at absmax / 24,
    // which round to 0) and 0.329 (e3m0: the rest at 0.75 absmax); subnormal blocks raise that to
    // 0.403 (e2m1: absmax 18 x 2^-149, the rest 2^-149, whose entries 0 and 2 x 2^-149 tie) and
    // 0.411 (e3m0). Gaussian data does far better (docs/plugins/compress.md).
    double error_bound() override { return bound_; }

private:
    // Checks everything about a frame before a single value is written, so a corrupt frame
    // leaves the destination untouched.
    std::pair<uint8_t, Layout> validate(const uint8_t* src, size_t bytes, size_t n) const {
        wire::require_count(n, "fp4");
        const wire::FrameHeader header = wire::read_header(src, bytes, kMagic, kVersion, n, "fp4");
        if (header.scheme != kE2M1 && header.scheme != kE3M0)
            throw Error(PANGEA_ERR_CORRUPT, "fp4: unknown format " + std::to_string(header.scheme) + " in the frame");
        if (header.block_size < kMinBlock || header.block_size > kMaxBlock)
            throw Error(PANGEA_ERR_CORRUPT, "fp4: block size " + std::to_string(header.block_size) +
                                                " in the frame is outside 8 to 16777216");
        const Layout layout{header.block_size};
        wire::require_size(bytes, layout.frame_size(n), "fp4");
        for (size_t b = 0; b < layout.blocks(n); ++b) {
            float absmax;
            std::memcpy(&absmax, src + sizeof(wire::FrameHeader) + b * sizeof(float), sizeof absmax);
            if (!std::isfinite(absmax) || std::signbit(absmax))
                throw Error(PANGEA_ERR_CORRUPT, "fp4: block " + std::to_string(b) + " has an invalid absmax (" +
                                                    std::to_string(absmax) + ")");
        }
        if (n % 2 == 1 && (src[layout.codes_offset(n) + n / 2] & 0xf0u) != 0)
            throw Error(PANGEA_ERR_CORRUPT, "fp4: the unused nibble after the last value is not zero");
        return {header.scheme, layout};
    }

    template <bool kAccumulate>
    void decode_into(const uint8_t* src, size_t bytes, float* dst, size_t n) {
        const auto [format, layout] = validate(src, bytes, n);
        if (n > 0 && dst == nullptr) throw Error(PANGEA_ERR_INVALID_ARGUMENT, "fp4: decode got a NULL destination");
        const Levels& levels = levels_of(format);
        const uint8_t* codes = src + layout.codes_offset(n);
        for (size_t b = 0; b < layout.blocks(n); ++b) {
            float absmax;
            std::memcpy(&absmax, src + sizeof(wire::FrameHeader) + b * sizeof(float), sizeof absmax);
            const size_t first = b * layout.block;
            decode_block<kAccumulate>(levels, absmax, codes, first, std::min(layout.block, n - first), dst + first);
        }
    }

    uint8_t format_;
    Layout layout_{};
    double bound_ = 1.0;
};

}  // namespace

PANGEA_EXPORT_PLUGINS(Fp4Compressor)
