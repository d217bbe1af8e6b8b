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
// Scales (`scale`): `fp32` stores each block's absmax as it is (the table's top is absmax);
// `log8` stores one fp32 `top`, the frame's largest absmax, and per block one byte k: the block's
// table top is top * 2^(-k/16) (k at most 255: 2^-16 of the frame's largest at least). The
// encoder tries the smallest such top at or above the block's absmax and the next 4 below it
// (which clip the block's largest values) and keeps the one with the least squared error. 8 bits
// instead of 32 per block buy blocks 4 times smaller at the same size: at block_size 16, 4.5 bits
// per value like fp32 scales at 64, with less error (docs/plugins/compress.md).
//
// Wire format: the 24-byte frame header (shared/wire.hpp; magic "PGF4", scheme 1 = e2m1,
// 2 = e3m0, block_size; version 1 for fp32 scales, 2 for log8), then the scales (version 1:
// ceil(n / block_size) f32 absmax values, non-negative and finite; version 2: the f32 top,
// non-negative and finite, then ceil(n / block_size) bytes k), then ceil(n / 2) code bytes: value
// i is in byte i / 2, the low nibble for even i, the high nibble for odd i; a nibble is
// sign << 3 | magnitude code. With n odd the last high nibble is 0. Host order. The encoder
// never writes the nibble 8 (a signed zero); a decoder reads it as 0.
//
// Determinism: every step is IEEE arithmetic in a fixed order on one thread (the build passes
// -ffp-contract=off), so the bytes are the same on every machine and run.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <utility>
#include <vector>

#include "../shared/wire.hpp"

namespace {

using pangea::compress::Error;
namespace wire = pangea::compress;

constexpr char kMagic[5] = "PGF4";
constexpr uint8_t kFp32Scales = 1;  // the frame version says how scales are stored
constexpr uint8_t kLog8Scales = 2;
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
// (log8 tops are doubles: the same IEEE operations everywhere, so the same bits too.)
void block_magnitudes(const Levels& levels, double top, float (&magnitude)[8]) {
    for (int c = 0; c < 8; ++c) magnitude[c] = static_cast<float>(levels.level[c] * top / levels.divisor);
}

// 2^(-j/16) for j = 0..15, exact double constants (not exp2(), whose last bit may differ between
// C libraries).
constexpr double kSixteenthPowers[16] = {
    0x1.0000000000000p+0, 0x1.ea4afa2a490dap-1, 0x1.d5818dcfba487p-1, 0x1.c199bdd85529cp-1,
    0x1.ae89f995ad3adp-1, 0x1.9c49182a3f090p-1, 0x1.8ace5422aa0dbp-1, 0x1.7a11473eb0187p-1,
    0x1.6a09e667f3bcdp-1, 0x1.5ab07dd485429p-1, 0x1.4bfdad5362a27p-1, 0x1.3dea64c123422p-1,
    0x1.306fe0a31b715p-1, 0x1.2387a6e756238p-1, 0x1.172b83c7d517bp-1, 0x1.0b5586cf9890fp-1};

// A log8 block's table top: top * 2^(-k/16).
double log8_top(float top, unsigned k) { return std::ldexp(double(top) * kSixteenthPowers[k % 16], -static_cast<int>(k / 16)); }

// The largest k (the smallest table top) whose top is at or above absmax; 255 at most.
unsigned log8_code(float top, float absmax) {
    if (absmax <= 0) return 255;
    const double ratio = double(top) / double(absmax);  // >= 1
    unsigned k = static_cast<unsigned>(std::clamp(std::floor(16 * std::log2(ratio)), 0.0, 255.0));
    while (k > 0 && log8_top(top, k) < absmax) --k;  // log2 may be off by a little: settle exactly
    while (k < 255 && log8_top(top, k + 1) >= absmax) ++k;
    return k;
}

// Layout of a frame of n values with blocks of `block` values.
struct Layout {
    size_t block;
    uint8_t scales;  // kFp32Scales or kLog8Scales
    size_t blocks(size_t n) const { return (n + block - 1) / block; }
    size_t scales_offset() const { return sizeof(wire::FrameHeader); }
    size_t codes_offset(size_t n) const {
        return scales_offset() + (scales == kLog8Scales ? sizeof(float) + blocks(n) : blocks(n) * sizeof(float));
    }
    size_t frame_size(size_t n) const { return codes_offset(n) + (n + 1) / 2; }
};

// The largest magnitude of a block; throws on NaN or Inf.
float block_absmax(const float* x, size_t len, size_t first) {
    float absmax = 0.0f;
    for (size_t i = 0; i < len; ++i) {
        if (!std::isfinite(x[i])) wire::throw_not_finite("fp4", x, len, first);
        absmax = std::max(absmax, std::fabs(x[i]));
    }
    return absmax;
}

// A block's table and the rule that picks an entry for a magnitude.
struct BlockTable {
    float magnitude[8];
    // Midpoints of consecutive entries: the sum of two floats within a factor 2 of each other (or
    // one of them 0) is exact in double, and so is the halving, so comparisons with them decide
    // "nearest" exactly.
    double midpoint[7];

    BlockTable(const Levels& levels, double top) {
        block_magnitudes(levels, top, magnitude);
        for (int c = 0; c < 7; ++c) midpoint[c] = (double(magnitude[c]) + double(magnitude[c + 1])) / 2;
    }
    unsigned code(double a) const {
        unsigned code = 0;
        for (unsigned c = 0; c < 7; ++c)  // halfway between c and c + 1: to whichever is even
            code += (c % 2 == 1) ? (a >= midpoint[c]) : (a > midpoint[c]);
        while (code > 0 && magnitude[code - 1] == magnitude[code]) --code;  // lowest equal code
        return code;
    }
    // The block's squared error with this table, in double, in order.
    double squared_error(const float* x, size_t len) const {
        double sum = 0;
        for (size_t i = 0; i < len; ++i) {
            const double a = std::fabs(static_cast<double>(x[i]));
            const double e = a - double(magnitude[code(a)]);
            sum += e * e;
        }
        return sum;
    }
};

// Encodes one block with `table` into codes (the frame's code bytes). An even value's nibble
// starts its byte and an odd one's completes it; blocks go in order, so a byte is whole once both
// are in (and no byte is read before it is written).
void encode_block(const BlockTable& table, const float* x, size_t len, size_t first, uint8_t* codes) {
    for (size_t i = 0; i < len; ++i) {
        const unsigned code = table.code(std::fabs(static_cast<double>(x[i])));
        const unsigned nibble = code | (code != 0 && x[i] < 0 ? 8u : 0u);
        const size_t at = first + i;
        if (at % 2 == 0)
            codes[at / 2] = static_cast<uint8_t>(nibble);
        else
            codes[at / 2] = static_cast<uint8_t>(codes[at / 2] | (nibble << 4));
    }
}

// The log8 code of a block: of the table tops from the smallest at or above its absmax down to
// 2^(-4/16) of that (clipping its largest values, which error feedback carries on), the one with
// the least squared error; the largest top of equals.
unsigned best_log8_code(const Levels& levels, float top, float absmax, const float* x, size_t len) {
    const unsigned first = log8_code(top, absmax);
    unsigned best = first;
    double least = BlockTable(levels, log8_top(top, first)).squared_error(x, len);
    for (unsigned k = first + 1; k <= std::min(first + 4, 255u); ++k) {
        const double error = BlockTable(levels, log8_top(top, k)).squared_error(x, len);
        if (error < least) least = error, best = k;
    }
    return best;
}

template <bool kAccumulate>
void decode_block(const Levels& levels, double top, const uint8_t* codes, size_t first, size_t len, float* dst) {
    float magnitude[8];
    block_magnitudes(levels, top, magnitude);
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
        "4-bit floats (e2m1 or e3m0) with a scale per block (its fp32 absmax, or a log8 byte); "
        "about 4.5 bits per value";
    static std::vector<pangea_setting> settings() {
        using namespace pangea::sdk;
        return {
            string_setting("format", "e2m1",
                           "e2m1: {0,0.5,1,1.5,2,3,4,6} x absmax/6; e3m0: 0 and 2^-6..1 x absmax", "e2m1|e3m0"),
            int_setting("block_size", "16", "values per block, each with its own scale (8 to 16777216)",
                        kMinBlock, kMaxBlock),
            string_setting("scale", "log8",
                           "fp32: each block's absmax (32 bits per block); log8: one byte per block, "
                           "2^(-k/16) of the frame's largest absmax", "fp32|log8"),
        };
    }

    explicit Fp4Compressor(const pangea::sdk::Host& host)
        : format_(host.get_string("format") == "e3m0" ? kE3M0 : kE2M1) {
        const int64_t block = host.get_int("block_size");
        if (block < kMinBlock || block > kMaxBlock)
            throw Error(PANGEA_ERR_CONFIG, "fp4: block_size " + std::to_string(block) + " is outside 8 to 16777216");
        layout_ = {static_cast<size_t>(block), host.get_string("scale") == "log8" ? kLog8Scales : kFp32Scales};
        // log8 promises nothing below 1: a block more than 2^-16 below the frame's largest may
        // round all its values to 0 (each value's error is at most the value: 0 is an entry).
        bound_ = layout_.scales == kLog8Scales ? 1.0 : bound_for(levels_of(format_), layout_.block);
    }

    size_t max_encoded_size(size_t n) override { return n > wire::kMaxValues ? SIZE_MAX : layout_.frame_size(n); }

    void encode(const float* src, size_t n, uint8_t* dst, size_t capacity, size_t* written) override {
        if ((src == nullptr && n > 0) || dst == nullptr || written == nullptr)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "fp4: encode got a NULL pointer");
        wire::require_count(n, "fp4");
        const size_t bytes = layout_.frame_size(n);
        wire::require_capacity(bytes, capacity, "fp4");
        wire::write_header(dst, kMagic, layout_.scales, format_, static_cast<uint32_t>(layout_.block), n);
        uint8_t* scales = dst + layout_.scales_offset();
        uint8_t* codes = dst + layout_.codes_offset(n);
        const Levels& levels = levels_of(format_);
        const size_t blocks = layout_.blocks(n);
        auto block_length = [&](size_t b) { return std::min(layout_.block, n - b * layout_.block); };
        if (layout_.scales == kFp32Scales) {
            for (size_t b = 0; b < blocks; ++b) {
                const size_t first = b * layout_.block;
                const float absmax = block_absmax(src + first, block_length(b), first);
                encode_block(BlockTable(levels, absmax), src + first, block_length(b), first, codes);
                std::memcpy(scales + b * sizeof(float), &absmax, sizeof absmax);
            }
        } else {
            std::vector<float> absmax(blocks);
            float top = 0.0f;
            for (size_t b = 0; b < blocks; ++b) {
                absmax[b] = block_absmax(src + b * layout_.block, block_length(b), b * layout_.block);
                top = std::max(top, absmax[b]);
            }
            std::memcpy(scales, &top, sizeof top);
            for (size_t b = 0; b < blocks; ++b) {
                const float* block = src + b * layout_.block;
                const unsigned k = best_log8_code(levels, top, absmax[b], block, block_length(b));
                scales[sizeof top + b] = static_cast<uint8_t>(k);
                encode_block(BlockTable(levels, log8_top(top, k)), block, block_length(b), b * layout_.block, codes);
            }
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
        // Either scale layout decodes, whatever this instance encodes with.
        const uint8_t version = src != nullptr && bytes > offsetof(wire::FrameHeader, version) &&
                                        src[offsetof(wire::FrameHeader, version)] == kLog8Scales
                                    ? kLog8Scales
                                    : kFp32Scales;
        const wire::FrameHeader header = wire::read_header(src, bytes, kMagic, version, n, "fp4");
        if (header.scheme != kE2M1 && header.scheme != kE3M0)
            throw Error(PANGEA_ERR_CORRUPT, "fp4: unknown format " + std::to_string(header.scheme) + " in the frame");
        if (header.block_size < kMinBlock || header.block_size > kMaxBlock)
            throw Error(PANGEA_ERR_CORRUPT, "fp4: block size " + std::to_string(header.block_size) +
                                                " in the frame is outside 8 to 16777216");
        const Layout layout{header.block_size, version};
        wire::require_size(bytes, layout.frame_size(n), "fp4");
        const size_t stored = version == kLog8Scales ? 1 : layout.blocks(n);  // fp32 values to check
        for (size_t b = 0; b < stored; ++b) {
            float absmax;
            std::memcpy(&absmax, src + layout.scales_offset() + b * sizeof(float), sizeof absmax);
            if (!std::isfinite(absmax) || std::signbit(absmax))
                throw Error(PANGEA_ERR_CORRUPT, "fp4: " + (version == kLog8Scales ? std::string("the frame's top") : "block " + std::to_string(b)) +
                                                    " has an invalid absmax (" + std::to_string(absmax) + ")");
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
        const uint8_t* scales = src + layout.scales_offset();
        const uint8_t* codes = src + layout.codes_offset(n);
        float top = 0.0f;
        if (layout.scales == kLog8Scales) std::memcpy(&top, scales, sizeof top);
        for (size_t b = 0; b < layout.blocks(n); ++b) {
            double block_top;
            if (layout.scales == kLog8Scales) {
                block_top = log8_top(top, scales[sizeof top + b]);
            } else {
                float absmax;
                std::memcpy(&absmax, scales + b * sizeof(float), sizeof absmax);
                block_top = absmax;
            }
            const size_t first = b * layout.block;
            decode_block<kAccumulate>(levels, block_top, codes, first, std::min(layout.block, n - first), dst + first);
        }
    }

    uint8_t format_;
    Layout layout_{};
    double bound_ = 1.0;
};

}  // namespace

PANGEA_EXPORT_PLUGINS(Fp4Compressor)
