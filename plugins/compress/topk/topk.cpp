// compress/topk: chunked top-k sparsification with quantized values.
//
// The values are cut into chunks of `chunk` values (the last may be shorter). Each chunk keeps
// its k = max(1, round(density * chunk_len)) largest magnitudes (round half away from zero; a tie
// in magnitude goes to the lower index), sends their indices within the chunk in
// ceil(log2(chunk)) bits each (12 for 4096), and one quantized value per index. Everything not
// kept decodes to 0. The host's error feedback carries what is dropped into the next round, so
// the codec itself is a pure function.
//
// Values (`value_bits`):
// - 2 (default): a sign bit and a 1-bit level, lo or hi, per chunk. The kept magnitudes are split
//   at their mean; lo and hi are the means of the two groups (hi = lo when every magnitude is at
//   the mean), and each value takes the nearer level (ties: lo). One step of Lloyd's algorithm,
//   which on the tail of a Gaussian (what top-k keeps) leaves well under 1% relative error on
//   the kept values.
// - 8: a symmetric int8 code round_half_even(x * 127 / A), A the chunk's largest kept magnitude,
//   read back as fp32(code * A / 127) (computed in double). A code whose value would land farther
//   from x than 0 does (possible only within an ulp of half a step) is written as 0.
//
// Wire format (host byte order): a 32-byte header:
//   0  magic "PGTK"          4  version (1)               5  value_bits (2 or 8)
//   6  u16 reserved, 0       8  u32 chunk                 12 u32 k of a full chunk
//   16 u32 k of the last chunk (the same as k for a full one; 0 when n = 0)
//   20 u32 reserved, 0       24 u64 n
// then, for each chunk in order: its fp32 parameters (2 bits: lo, hi; 8 bits: A), then a bit
// stream, least significant bit first: the k indices (strictly increasing, each below the
// chunk's length), then the k codes (2 bits: bit 0 = hi, bit 1 = negative; 8 bits: two's
// complement, never -128), padded with zero bits to a whole byte. The size is therefore fixed by
// n and the settings; max_encoded_size() is exact.
//
// Determinism: the kept set is unique (magnitude, then lower index, is a total order), sums run in
// index order in double, and the build passes -ffp-contract=off; no threads.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "../shared/wire.hpp"

namespace {

using pangea::compress::Error;
namespace wire = pangea::compress;

constexpr char kMagic[5] = "PGTK";
constexpr uint8_t kVersion = 1;
constexpr uint32_t kMaxChunk = 1u << 24;

struct Header {
    char magic[4];
    uint8_t version;
    uint8_t value_bits;
    uint16_t reserved;
    uint32_t chunk;
    uint32_t kept;       // per full chunk
    uint32_t kept_last;  // in the last chunk
    uint32_t reserved2;
    uint64_t count;
};
static_assert(sizeof(Header) == 32, "the frame header is part of the wire format");

uint32_t float_bits(float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
}

float read_float(const uint8_t* at) {
    float value;
    std::memcpy(&value, at, sizeof value);
    return value;
}

// ceil(log2(chunk)): the bits that hold any index below `chunk`.
unsigned index_bits(size_t chunk) {
    unsigned bits = 0;
    while ((size_t{1} << bits) < chunk) ++bits;
    return bits;
}

// Where everything lies in a frame: fixed by n, the chunk, the two k and the value bits.
struct Layout {
    size_t chunk;
    size_t kept;       // per full chunk
    size_t kept_last;  // in the last chunk
    unsigned value_bits;
    unsigned index_bits;

    size_t chunks(size_t n) const { return (n + chunk - 1) / chunk; }
    size_t params() const { return value_bits == 2 ? 2 * sizeof(float) : sizeof(float); }
    size_t chunk_bytes(size_t k) const { return params() + (k * (index_bits + value_bits) + 7) / 8; }
    size_t kept_in(size_t c, size_t n) const { return c + 1 == chunks(n) ? kept_last : kept; }
    size_t chunk_offset(size_t c) const { return sizeof(Header) + c * chunk_bytes(kept); }
    size_t frame_size(size_t n) const {
        const size_t count = chunks(n);
        return count == 0 ? sizeof(Header) : sizeof(Header) + (count - 1) * chunk_bytes(kept) + chunk_bytes(kept_last);
    }
};

// Bits packed least significant first; `width` is at most 24, so 64 bits of buffer suffice.
class BitWriter {
public:
    explicit BitWriter(uint8_t* out) : out_(out) {}
    void put(uint32_t value, unsigned width) {
        buffer_ |= static_cast<uint64_t>(value) << filled_;
        filled_ += width;
        while (filled_ >= 8) {
            *out_++ = static_cast<uint8_t>(buffer_);
            buffer_ >>= 8;
            filled_ -= 8;
        }
    }
    void finish() {  // the last partial byte, its unused bits zero
        if (filled_ > 0) *out_++ = static_cast<uint8_t>(buffer_);
        buffer_ = 0;
        filled_ = 0;
    }

private:
    uint8_t* out_;
    uint64_t buffer_ = 0;
    unsigned filled_ = 0;
};

class BitReader {
public:
    explicit BitReader(const uint8_t* in) : in_(in) {}
    uint32_t get(unsigned width) {
        while (filled_ < width) {
            buffer_ |= static_cast<uint64_t>(*in_++) << filled_;
            filled_ += 8;
        }
        const uint32_t value = static_cast<uint32_t>(buffer_ & ((uint64_t{1} << width) - 1));
        buffer_ >>= width;
        filled_ -= width;
        return value;
    }
    // After the last get(): the rest of the last byte read, which must be zero padding.
    bool padding_is_zero() const { return buffer_ == 0; }

private:
    const uint8_t* in_;
    uint64_t buffer_ = 0;
    unsigned filled_ = 0;
};

float decode_int8(int code, float absmax) {
    return static_cast<float>(static_cast<double>(code) * static_cast<double>(absmax) / 127.0);
}

// ---------------------------------------------------------------------------- encoding

// The indices of the k largest magnitudes of x[0, len), ascending. Keys order by magnitude (the
// bits of |x| order as its value) and then by lower index, a total order, so the kept set does
// not depend on how nth_element partitions.
void select_top(const float* x, size_t len, size_t k, std::vector<uint64_t>& keys, std::vector<uint32_t>& kept) {
    kept.resize(k);
    if (k == len) {
        for (size_t i = 0; i < len; ++i) kept[i] = static_cast<uint32_t>(i);
        return;
    }
    keys.resize(len);
    for (size_t i = 0; i < len; ++i)
        keys[i] = static_cast<uint64_t>(float_bits(x[i]) & 0x7fffffffu) << 32 |
                  (0xffffffffu - static_cast<uint32_t>(i));
    std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(k - 1), keys.end(), std::greater<>());
    for (size_t j = 0; j < k; ++j) kept[j] = 0xffffffffu - static_cast<uint32_t>(keys[j]);
    std::sort(kept.begin(), kept.end());
}

// 2 bits: the levels lo <= hi and each kept value's code.
void quantize_2bit(const float* x, const std::vector<uint32_t>& kept, float* lo, float* hi,
                   std::vector<uint32_t>& codes) {
    double total = 0;
    for (uint32_t i : kept) total += std::fabs(static_cast<double>(x[i]));
    const double mean = total / static_cast<double>(kept.size());
    double low_sum = 0, high_sum = 0;
    size_t low_count = 0, high_count = 0;
    for (uint32_t i : kept) {
        const double m = std::fabs(static_cast<double>(x[i]));
        if (m > mean) {
            high_sum += m;
            ++high_count;
        } else {
            low_sum += m;
            ++low_count;
        }
    }
    // The smallest kept magnitude is at most the mean, so the low group is empty only if rounding
    // of the sums put the mean below it; then one level serves all.
    const double low_mean = low_count > 0 ? low_sum / static_cast<double>(low_count)
                                          : high_sum / static_cast<double>(high_count);
    const double high_mean = high_count > 0 ? high_sum / static_cast<double>(high_count) : low_mean;
    *lo = static_cast<float>(low_mean);
    *hi = std::max(*lo, static_cast<float>(high_mean));  // rounding must not reverse them
    codes.resize(kept.size());
    for (size_t j = 0; j < kept.size(); ++j) {
        const float v = x[kept[j]];
        // The nearer level (ties: lo): 2|v| - hi > lo, exact in double whenever it could be close.
        const double twice = 2.0 * std::fabs(static_cast<double>(v));
        const uint32_t level = twice - static_cast<double>(*hi) > static_cast<double>(*lo) ? 1u : 0u;
        codes[j] = level | (v < 0 ? 2u : 0u);
    }
}

// 8 bits: the chunk's scale A and each kept value's code (two's complement in 8 bits).
void quantize_8bit(const float* x, const std::vector<uint32_t>& kept, float* absmax, std::vector<uint32_t>& codes) {
    float a = 0.0f;
    for (uint32_t i : kept) a = std::max(a, std::fabs(x[i]));
    *absmax = a;
    codes.resize(kept.size());
    for (size_t j = 0; j < kept.size(); ++j) {
        const float v = x[kept[j]];
        int code = 0;
        if (a > 0) {
            // |v| <= a, so the quotient is at most 127; nearbyint rounds half to even.
            code = static_cast<int>(std::nearbyint(static_cast<double>(v) * 127.0 / static_cast<double>(a)));
            code = std::clamp(code, -127, 127);
            // Never farther from v than 0 is (the proof of error_bound() needs it): for a code of
            // v's sign that means |decoded| <= 2|v|, compared exactly in double.
            if (std::fabs(static_cast<double>(decode_int8(code, a))) > 2.0 * std::fabs(static_cast<double>(v)))
                code = 0;
        }
        codes[j] = static_cast<uint32_t>(code) & 0xffu;
    }
}

// ---------------------------------------------------------------------------- the plugin

class TopkCompressor final : public pangea::sdk::Compressor {
public:
    static constexpr const char* name = "topk";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description =
        "chunked top-k: the largest magnitudes of each chunk with packed indices and 2- or 8-bit values "
        "(gather aggregation; needs host ABI 1.4)";
    // Gather aggregation: a host older than 1.4 would sum these messages along a ring.
    static constexpr uint32_t min_host_abi_minor = 4;

    static std::vector<pangea_setting> settings() {
        using namespace pangea::sdk;
        return {
            int_setting("chunk", "4096", "values per chunk; indices take ceil(log2(chunk)) bits (1 to 16777216)", 1,
                        kMaxChunk),
            float_setting("density", "0.01", "fraction of each chunk kept: k = max(1, round(density * chunk length))", 0,
                          1),
            int_setting("value_bits", "2", "bits per kept value: 2 (sign and one of two levels) or 8 (int8)", 2, 8),
        };
    }

    explicit TopkCompressor(const pangea::sdk::Host& host) : density_(host.get_float("density")) {
        const int64_t chunk = host.get_int("chunk");
        const int64_t bits = host.get_int("value_bits");
        if (chunk < 1 || chunk > kMaxChunk)
            throw Error(PANGEA_ERR_CONFIG, "topk: chunk " + std::to_string(chunk) + " is outside 1 to 16777216");
        if (bits != 2 && bits != 8)
            throw Error(PANGEA_ERR_CONFIG, "topk: value_bits " + std::to_string(bits) + " is not 2 or 8");
        if (!(density_ >= 0 && density_ <= 1))
            throw Error(PANGEA_ERR_CONFIG, "topk: density " + std::to_string(density_) + " is outside 0 to 1");
        chunk_ = static_cast<size_t>(chunk);
        value_bits_ = static_cast<unsigned>(bits);
    }

    size_t max_encoded_size(size_t n) override { return n > wire::kMaxValues ? SIZE_MAX : layout_for(n).frame_size(n); }

    void encode(const float* src, size_t n, uint8_t* dst, size_t capacity, size_t* written) override {
        if ((src == nullptr && n > 0) || dst == nullptr || written == nullptr)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "topk: encode got a NULL pointer");
        wire::require_count(n, "topk");
        const Layout layout = layout_for(n);
        const size_t bytes = layout.frame_size(n);
        wire::require_capacity(bytes, capacity, "topk");
        for (size_t i = 0; i < n; ++i)  // before anything is written
            if (!std::isfinite(src[i])) wire::throw_not_finite("topk", src, n, 0);

        Header header{};
        std::memcpy(header.magic, kMagic, 4);
        header.version = kVersion;
        header.value_bits = static_cast<uint8_t>(value_bits_);
        header.chunk = static_cast<uint32_t>(chunk_);
        header.kept = static_cast<uint32_t>(layout.kept);
        header.kept_last = static_cast<uint32_t>(layout.kept_last);
        header.count = n;
        std::memcpy(dst, &header, sizeof header);

        std::vector<uint64_t> keys;
        std::vector<uint32_t> kept, codes;
        for (size_t c = 0; c < layout.chunks(n); ++c) {
            const float* x = src + c * chunk_;
            const size_t len = std::min(chunk_, n - c * chunk_);
            select_top(x, len, layout.kept_in(c, n), keys, kept);
            uint8_t* out = dst + layout.chunk_offset(c);
            float params[2];
            if (value_bits_ == 2)
                quantize_2bit(x, kept, &params[0], &params[1], codes);
            else
                quantize_8bit(x, kept, &params[0], codes);
            std::memcpy(out, params, layout.params());
            BitWriter bits(out + layout.params());
            for (uint32_t i : kept) bits.put(i, layout.index_bits);
            for (uint32_t code : codes) bits.put(code, value_bits_);
            bits.finish();
        }
        *written = bytes;
    }

    void decode(const uint8_t* src, size_t bytes, float* dst, size_t n) override {
        decode_into<false>(src, bytes, dst, n);
    }
    void decode_accumulate(const uint8_t* src, size_t bytes, float* acc, size_t n) override {
        decode_into<true>(src, bytes, acc, n);
    }

    uint64_t capabilities() override { return PANGEA_COMPRESS_CAP_ERROR_FEEDBACK | PANGEA_COMPRESS_CAP_GATHER; }

    // 1: no round trip loses more than the whole input, for any finite input. Per chunk:
    // - a value not kept decodes to 0: its error is the value itself;
    // - 8 bits: each kept value's code is never farther from it than 0 (quantize_8bit), so its
    //   error is at most the value itself too;
    // - 2 bits: assign each kept value to its group (magnitude at most the mean of all kept, or
    //   above it). A group's level L is fp32(double mean of the group's magnitudes); with mu the
    //   exact mean, 0 <= L <= 2 mu (double rounding is relative 2^-52 per step on non-negative
    //   terms; fp32 rounding gives at most mu (1 + 2^-24) when normal, and a subnormal rounds to
    //   the nearest multiple of 2^-149, so at most mu + 2^-150 <= 2 mu when mu >= 2^-150, and 0
    //   below). hi raised to lo (a rounding corner) stays below 2 mu too, the high group's mean
    //   being above the low one's. Then sum over the group (m - L)^2 = sum m^2 - count L (2 mu - L)
    //   <= sum m^2. The encoder picks the nearer level, which can only lower each value's error.
    // Adding up: error^2 <= the input's energy. Gaussian data at the defaults lands near 0.96:
    // keeping 1% cannot do better, and error feedback sends the rest later.
    double error_bound() override { return 1.0; }

private:
    size_t kept_for(size_t len) const {
        const double wanted = std::round(density_ * static_cast<double>(len));
        return std::clamp<size_t>(static_cast<size_t>(wanted), 1, len);
    }

    Layout layout_for(size_t n) const {
        Layout layout{chunk_, kept_for(chunk_), 0, value_bits_, index_bits(chunk_)};
        if (n > 0) layout.kept_last = kept_for(n - (layout.chunks(n) - 1) * chunk_);
        return layout;
    }

    static std::string at_chunk(size_t c) { return "topk: chunk " + std::to_string(c) + ": "; }

    // Checks everything about a frame before a single value is written, so a corrupt frame leaves
    // the destination untouched.
    Layout validate(const uint8_t* src, size_t bytes, size_t n) const {
        wire::require_count(n, "topk");
        Header header;
        if (src == nullptr || bytes < sizeof header)
            throw Error(PANGEA_ERR_CORRUPT,
                        "topk: " + std::to_string(bytes) + " bytes are too short for a frame header (32)");
        std::memcpy(&header, src, sizeof header);
        if (std::memcmp(header.magic, kMagic, 4) != 0)
            throw Error(PANGEA_ERR_CORRUPT, "topk: bad magic (not topk data)");
        if (header.version != kVersion)
            throw Error(PANGEA_ERR_CORRUPT, "topk: format version " + std::to_string(header.version) + ", expected " +
                                                std::to_string(kVersion));
        if (header.reserved != 0 || header.reserved2 != 0)
            throw Error(PANGEA_ERR_CORRUPT, "topk: reserved header fields are not zero");
        if (header.count != n)
            throw Error(PANGEA_ERR_CORRUPT, "topk: frame holds " + std::to_string(header.count) + " values, expected " +
                                                std::to_string(n));
        if (header.value_bits != 2 && header.value_bits != 8)
            throw Error(PANGEA_ERR_CORRUPT, "topk: value_bits " + std::to_string(header.value_bits) + " in the frame");
        if (header.chunk < 1 || header.chunk > kMaxChunk)
            throw Error(PANGEA_ERR_CORRUPT, "topk: chunk " + std::to_string(header.chunk) + " in the frame");
        const Layout layout{header.chunk, header.kept, header.kept_last, header.value_bits, index_bits(header.chunk)};
        if (layout.kept < 1 || layout.kept > layout.chunk)
            throw Error(PANGEA_ERR_CORRUPT, "topk: the header keeps " + std::to_string(layout.kept) +
                                                " values of each chunk of " + std::to_string(layout.chunk));
        const size_t chunks = layout.chunks(n);
        const size_t last_len = chunks == 0 ? 0 : n - (chunks - 1) * layout.chunk;
        const bool last_ok = chunks == 0 ? layout.kept_last == 0
                                         : layout.kept_last >= 1 && layout.kept_last <= last_len &&
                                               (last_len < layout.chunk || layout.kept_last == layout.kept);
        // Both counts come from one density: with each within 1/2 of density * length (or raised
        // to 1 from below 1/2), |kept_last * chunk - kept * last_len| <= chunk.
        const auto product = [](size_t a, size_t b) { return static_cast<int64_t>(a * b); };  // < 2^49
        const bool same_density =
            chunks == 0 ||
            std::llabs(product(layout.kept_last, layout.chunk) - product(layout.kept, last_len)) <=
                static_cast<int64_t>(layout.chunk);
        if (!last_ok || !same_density)
            throw Error(PANGEA_ERR_CORRUPT, "topk: the header keeps " + std::to_string(layout.kept_last) +
                                                " values of the last chunk, of " + std::to_string(last_len) +
                                                ", which does not match " + std::to_string(layout.kept) +
                                                " of each chunk of " + std::to_string(layout.chunk));
        wire::require_size(bytes, layout.frame_size(n), "topk");

        for (size_t c = 0; c < chunks; ++c) {
            const uint8_t* at = src + layout.chunk_offset(c);
            const size_t len = std::min(layout.chunk, n - c * layout.chunk);
            for (size_t p = 0; p < layout.params() / sizeof(float); ++p) {
                const float value = read_float(at + p * sizeof(float));
                if (!std::isfinite(value) || std::signbit(value))
                    throw Error(PANGEA_ERR_CORRUPT, at_chunk(c) + "invalid scale " + std::to_string(value));
            }
            if (layout.value_bits == 2 && read_float(at) > read_float(at + sizeof(float)))
                throw Error(PANGEA_ERR_CORRUPT, at_chunk(c) + "level lo is above level hi");
            BitReader bits(at + layout.params());
            const size_t k = layout.kept_in(c, n);
            size_t previous = 0;
            for (size_t j = 0; j < k; ++j) {
                const size_t index = bits.get(layout.index_bits);
                if (index >= len)
                    throw Error(PANGEA_ERR_CORRUPT, at_chunk(c) + "index " + std::to_string(index) +
                                                        " is past the chunk's " + std::to_string(len) + " values");
                if (j > 0 && index <= previous)
                    throw Error(PANGEA_ERR_CORRUPT, at_chunk(c) + "index " + std::to_string(index) + " follows " +
                                                        std::to_string(previous) + " (indices must increase)");
                previous = index;
            }
            for (size_t j = 0; j < k; ++j)
                if (bits.get(layout.value_bits) == 0x80u && layout.value_bits == 8)
                    throw Error(PANGEA_ERR_CORRUPT, at_chunk(c) + "code -128 (codes are -127 to 127)");
            if (!bits.padding_is_zero()) throw Error(PANGEA_ERR_CORRUPT, at_chunk(c) + "padding bits are not zero");
        }
        return layout;
    }

    template <bool kAccumulate>
    void decode_into(const uint8_t* src, size_t bytes, float* dst, size_t n) {
        const Layout layout = validate(src, bytes, n);
        if (n > 0 && dst == nullptr) throw Error(PANGEA_ERR_INVALID_ARGUMENT, "topk: decode got a NULL destination");
        if constexpr (!kAccumulate) std::fill(dst, dst + n, 0.0f);
        std::vector<uint32_t> indices;
        for (size_t c = 0; c < layout.chunks(n); ++c) {
            const uint8_t* at = src + layout.chunk_offset(c);
            float* out = dst + c * layout.chunk;
            const float first = read_float(at);
            const float second = layout.value_bits == 2 ? read_float(at + sizeof(float)) : 0.0f;
            BitReader bits(at + layout.params());
            indices.resize(layout.kept_in(c, n));
            for (uint32_t& index : indices) index = bits.get(layout.index_bits);
            for (uint32_t index : indices) {
                const uint32_t code = bits.get(layout.value_bits);
                float value;
                if (layout.value_bits == 2) {
                    value = (code & 1u) ? second : first;
                    if (code & 2u) value = -value;
                } else {
                    value = decode_int8(static_cast<int8_t>(static_cast<uint8_t>(code)), first);
                }
                if constexpr (kAccumulate)
                    out[index] += value;
                else
                    out[index] = value;
            }
        }
    }

    double density_;
    size_t chunk_ = 4096;
    unsigned value_bits_ = 2;
};

}  // namespace

PANGEA_EXPORT_PLUGINS(TopkCompressor)
