// compress/fp4 and compress/topk, loaded through the plugin host as in a run: exact round trips,
// accuracy on Gaussian data, which values top-k keeps, wire sizes, determinism and malformed frames.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "pangea/compress.h"
#include "plugin_host/plugin_instance.hpp"

namespace pangea {
namespace {

std::vector<float> gaussian(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> out(n);
    for (auto& v : out) v = normal(rng);
    return out;
}

double relative_l2(const std::vector<float>& x, const std::vector<float>& y) {
    double error = 0, norm = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        error += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
        norm += double(x[i]) * x[i];
    }
    return norm == 0 ? std::sqrt(error) : std::sqrt(error / norm);
}

class Codec {
public:
    explicit Codec(const std::string& plugin, const std::map<std::string, SettingValue>& overrides = {})
        : registry_(std::vector<SearchPath>{{PANGEA_TEST_BUILTIN_PLUGINS, "build tree"}}) {
        const PluginDescriptor& descriptor = registry_.get(PANGEA_KIND_COMPRESS, plugin);
        SettingMap settings = descriptor.default_settings();
        for (const auto& [key, value] : overrides) settings[key] = {value, "test"};
        instance_ = std::make_unique<PluginInstance>(descriptor, settings);
        vt_ = &instance_->vtable<pangea_compress_vtable>();
    }

    size_t max_size(size_t n) const { return vt_->max_encoded_size(instance_->handle(), n); }
    std::vector<uint8_t> encode(const std::vector<float>& x) const {
        std::vector<uint8_t> out(max_size(x.size()));
        size_t written = 0;
        const pangea_status status =
            vt_->encode(instance_->handle(), x.data(), x.size(), out.data(), out.size(), &written);
        EXPECT_EQ(status, PANGEA_OK) << instance_->last_error();
        out.resize(written);
        return out;
    }
    pangea_status encode_status(const std::vector<float>& x, size_t capacity) const {
        std::vector<uint8_t> out(capacity + 1);
        size_t written = 0;
        return vt_->encode(instance_->handle(), x.data(), x.size(), out.data(), capacity, &written);
    }
    std::vector<float> decode(const std::vector<uint8_t>& bytes, size_t n) const {
        std::vector<float> out(n, std::numeric_limits<float>::quiet_NaN());
        const pangea_status status = vt_->decode(instance_->handle(), bytes.data(), bytes.size(), out.data(), n);
        EXPECT_EQ(status, PANGEA_OK) << instance_->last_error();
        return out;
    }
    // decode_accumulate of a frame that must be refused: PANGEA_ERR_CORRUPT, acc untouched, and
    // decode() refuses it too.
    void expect_corrupt(const std::vector<uint8_t>& bytes, size_t n, const std::string& what) const {
        std::vector<float> acc(n, 1.0f);
        EXPECT_EQ(vt_->decode_accumulate(instance_->handle(), bytes.data(), bytes.size(), acc.data(), n),
                  PANGEA_ERR_CORRUPT)
            << what;
        EXPECT_THAT(instance_->last_error(), ::testing::Not(::testing::IsEmpty())) << what;
        for (float v : acc) ASSERT_EQ(v, 1.0f) << what << ": a failed decode_accumulate wrote";
        std::vector<float> out(n);
        EXPECT_EQ(vt_->decode(instance_->handle(), bytes.data(), bytes.size(), out.data(), n), PANGEA_ERR_CORRUPT)
            << what;
    }
    std::vector<float> round_trip(const std::vector<float>& x) const { return decode(encode(x), x.size()); }
    double error_bound() const { return vt_->error_bound(instance_->handle()); }
    uint64_t capabilities() const { return vt_->capabilities(instance_->handle()); }
    std::string last_error() const { return instance_->last_error(); }

private:
    PluginRegistry registry_;
    std::unique_ptr<PluginInstance> instance_;
    const pangea_compress_vtable* vt_ = nullptr;
};

float from_bits(uint32_t bits) {
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

void put_float(std::vector<uint8_t>& bytes, size_t at, float value) { std::memcpy(bytes.data() + at, &value, 4); }

// fp4's first layout, fp32 scales per 64 values (the default is log8 scales per 16), and e3m0 in it.
const std::map<std::string, SettingValue> kFp32Scales = {{"scale", std::string("fp32")}, {"block_size", int64_t{64}}};
const std::map<std::string, SettingValue> kE3M0 = {
    {"format", std::string("e3m0")}, {"scale", std::string("fp32")}, {"block_size", int64_t{64}}};
const std::map<std::string, SettingValue> kTopk8 = {{"value_bits", int64_t{8}}};
const std::map<std::string, SettingValue> kTopkSmall = {{"chunk", int64_t{100}}, {"density", 0.05}};

// ------------------------------------------------------------------ fp4

TEST(Fp4Codec, RepresentableValuesRoundTripExactly) {
    const float e2m1[] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    const float e3m0[] = {0, 1.0f / 64, 1.0f / 32, 1.0f / 16, 1.0f / 8, 0.25f, 0.5f, 1};
    std::mt19937 rng(3);
    for (const bool is_e3m0 : {false, true}) {
        const float* levels = is_e3m0 ? e3m0 : e2m1;
        const Codec codec("fp4", is_e3m0 ? kE3M0 : kFp32Scales);
        for (const float scale : {1.0f, 0.25f, 1024.0f, 0x1p-20f, 0x1p-100f, 3.0f}) {
            // 5 blocks of 64 and a short one; each block holds its largest level (the absmax).
            std::vector<float> x(5 * 64 + 17);
            for (size_t i = 0; i < x.size(); ++i) {
                const float magnitude = i % 64 == 5 ? levels[7] : levels[rng() % 8];
                x[i] = (rng() % 2 ? -magnitude : magnitude) * scale;
            }
            EXPECT_EQ(codec.round_trip(x), x) << (is_e3m0 ? "e3m0" : "e2m1") << " scale " << scale;
        }
    }
}

TEST(Fp4Codec, ZeroAndTinyValuesAndEmptyInput) {
    const Codec codec("fp4", kFp32Scales);
    EXPECT_EQ(codec.round_trip({}), std::vector<float>{});
    EXPECT_EQ(codec.encode({}).size(), 24u);
    const std::vector<float> zeros(100, 0.0f);
    const auto bytes = codec.encode(zeros);
    const auto decoded = codec.decode(bytes, zeros.size());
    for (float v : decoded) EXPECT_FALSE(std::signbit(v)) << "zero decodes as +0";
    EXPECT_EQ(decoded, zeros);
    EXPECT_EQ(codec.encode({-0.0f, 0.0f}), codec.encode({0.0f, 0.0f})) << "-0 is written as 0";
    // The smallest subnormal alone is its block's absmax and reads back exactly.
    EXPECT_EQ(codec.round_trip({from_bits(1)}), std::vector<float>{from_bits(1)});
    // The largest float too: no overflow in the scale.
    const float big = std::numeric_limits<float>::max();
    EXPECT_EQ(codec.round_trip({big, -big, 0.0f}), (std::vector<float>{big, -big, 0.0f}));
}

// The promised bound, and the blocks that come nearest to it: with a normal absmax, one value at
// absmax and the rest where rounding loses most; with a subnormal one (j x 2^-149), where fp32's
// table has fewer bits.
TEST(Fp4Codec, WorstBlocksAndTheBound) {
    for (const bool is_e3m0 : {false, true}) {
        const Codec codec("fp4", is_e3m0 ? kE3M0 : kFp32Scales);
        const double bound = codec.error_bound();
        EXPECT_NEAR(bound, is_e3m0 ? 0.4110 : 0.4035, 0.0005);
        // e2m1: absmax / 24 (a quarter of the first step, which rounds to 0); e3m0: 0.75 absmax
        // (halfway between 1/2 and 1, which goes to 1/2).
        std::vector<float> x(64, is_e3m0 ? 0.75f : 1.0f / 24);
        x[0] = 1.0f;
        EXPECT_NEAR(relative_l2(x, codec.round_trip(x)), is_e3m0 ? 0.3287 : 0.3140, 0.0005);
        std::vector<float> tiny(64, from_bits(is_e3m0 ? 2 : 1));
        tiny[0] = from_bits(is_e3m0 ? 11 : 18);
        const double error = relative_l2(tiny, codec.round_trip(tiny));
        EXPECT_LE(error, bound);
        EXPECT_GT(error, bound - 1e-6) << "the bound is the worst case";
    }
    EXPECT_NEAR(Codec("fp4", {{"scale", std::string("fp32")}, {"block_size", int64_t{8}}}).error_bound(), 0.25, 0.001);
    EXPECT_EQ(Codec("fp4", {{"scale", std::string("fp32")}, {"block_size", int64_t{1} << 24}}).error_bound(), 1.0);
}

// Blocks whose absmax is a subnormal float (below 2^-126), where the fp32 table has fewer bits:
// the bound, proven for normal maxima, holds here too. A = j * 2^-149; the worst block of each
// A has 63 equal values (see Fp4Compressor::error_bound()), tried at every magnitude.
TEST(Fp4Codec, BoundHoldsForSubnormalBlocks) {
    for (const bool is_e3m0 : {false, true}) {
        const Codec codec("fp4", is_e3m0 ? kE3M0 : kFp32Scales);
        const double bound = codec.error_bound();
        double worst = 0;
        for (uint32_t j = 1; j <= 200; ++j)
            for (uint32_t i = 0; i <= j; ++i) {
                std::vector<float> x(64, from_bits(i));
                x[0] = from_bits(j);
                const double error = relative_l2(x, codec.round_trip(x));
                worst = std::max(worst, error);
                ASSERT_LE(error, bound) << "absmax " << j << " x 2^-149, others " << i << " x 2^-149";
            }
        for (uint32_t j : {1000u, 77777u, 1u << 22, (1u << 23) - 1})  // a few larger subnormal maxima
            for (double t : {1.0 / 24, 0.75, 5.0 / 6, 0.5 / 6, 1.0 / 128, 1.5 / 64}) {
                std::vector<float> x(64, from_bits(static_cast<uint32_t>(std::lround(j * t))));
                x[0] = from_bits(j);
                ASSERT_LE(relative_l2(x, codec.round_trip(x)), bound) << j << " " << t;
            }
        std::printf("fp4 %s: worst relative error on subnormal blocks %.4f, bound %.4f\n",
                    is_e3m0 ? "e3m0" : "e2m1", worst, bound);
    }
}

TEST(Fp4Codec, PerValueErrorWithinHalfAStep) {
    const auto x = gaussian(4096 + 33, 4);
    const Codec codec("fp4", kFp32Scales);
    const auto y = codec.round_trip(x);
    for (size_t first = 0; first < x.size(); first += 64) {
        const size_t last = std::min(x.size(), first + 64);
        float absmax = 0;
        for (size_t i = first; i < last; ++i) absmax = std::max(absmax, std::fabs(x[i]));
        for (size_t i = first; i < last; ++i) {
            // e2m1's largest step is 2 * scale (between 4 and 6), at the top of the range.
            ASSERT_LE(std::fabs(x[i] - y[i]), absmax / 6 * (1 + 1e-6)) << i;
            ASSERT_LE(std::fabs(x[i] - y[i]), std::fabs(x[i])) << i << ": never farther than 0 is";
            ASSERT_TRUE(y[i] == 0 || std::signbit(y[i]) == std::signbit(x[i])) << i;
        }
    }
}

TEST(Fp4Codec, RoundsToNearestWithTiesToTheEvenCode) {
    const Codec codec("fp4", kFp32Scales);
    // Scale 1 (absmax 6): halfway points 0.25 0.75 1.25 1.75 2.5 3.5 5 go to 0 1 1 2 2 4 4.
    EXPECT_EQ(codec.round_trip({6, 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5, -5, 0.2500001f, 4.9f}),
              (std::vector<float>{6, 0, 1, 1, 2, 2, 4, 4, -4, 0.5f, 4}));
    const Codec e3m0("fp4", kE3M0);
    // Absmax 1: levels 2^-6..1; halfway points 2^-7, 3 * 2^-7, ..., 0.75 go to the even code
    // (0, 2^-5, 2^-5, 2^-3, 2^-3, 2^-1, 2^-1).
    EXPECT_EQ(e3m0.round_trip({1, 0x1p-7f, 3 * 0x1p-7f, 3 * 0x1p-6f, 3 * 0x1p-5f, 3 * 0x1p-4f, 3 * 0x1p-3f, 0.75f, 0.7f}),
              (std::vector<float>{1, 0, 0x1p-5f, 0x1p-5f, 0x1p-3f, 0x1p-3f, 0.5f, 0.5f, 0.5f}));
}

// ------------------------------------------------------------------ topk

// The reference: the k largest magnitudes of a chunk, ties to the lower index.
std::vector<size_t> top_indices(const std::vector<float>& x, size_t first, size_t len, size_t k) {
    std::vector<size_t> order(len);
    std::iota(order.begin(), order.end(), first);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return std::fabs(x[a]) > std::fabs(x[b]); });
    order.resize(k);
    std::sort(order.begin(), order.end());
    return order;
}

size_t kept_for(double density, size_t len) {
    return std::clamp<size_t>(static_cast<size_t>(std::round(density * static_cast<double>(len))), 1, len);
}

void expect_keeps_top_k(const Codec& codec, const std::vector<float>& x, size_t chunk, double density) {
    const auto y = codec.round_trip(x);
    for (size_t first = 0; first < x.size(); first += chunk) {
        const size_t len = std::min(chunk, x.size() - first);
        const auto expected = top_indices(x, first, len, kept_for(density, len));
        std::vector<size_t> nonzero;
        for (size_t i = first; i < first + len; ++i)
            if (y[i] != 0) nonzero.push_back(i);
        ASSERT_EQ(nonzero, expected) << "chunk at " << first;
        for (size_t i : expected) ASSERT_EQ(std::signbit(y[i]), std::signbit(x[i])) << i;
    }
}

TEST(TopkCodec, KeepsExactlyTheKLargestOfEachChunk) {
    const auto x = gaussian(3 * 4096 + 1000, 5);
    expect_keeps_top_k(Codec("topk"), x, 4096, 0.01);
    expect_keeps_top_k(Codec("topk", kTopk8), x, 4096, 0.01);
    expect_keeps_top_k(Codec("topk", kTopkSmall), x, 100, 0.05);
    expect_keeps_top_k(Codec("topk", {{"density", 0.5}, {"chunk", int64_t{7}}}), x, 7, 0.5);
}

TEST(TopkCodec, TiesGoToTheLowerIndex) {
    std::vector<float> x(4096 + 50);
    for (size_t i = 0; i < x.size(); ++i) x[i] = i % 3 == 0 ? -2.0f : 2.0f;
    x[4000] = 3.0f;  // the largest of the first chunk, kept before the tied ones
    const Codec codec("topk");
    const auto y = codec.round_trip(x);
    std::vector<size_t> kept;
    for (size_t i = 0; i < x.size(); ++i)
        if (y[i] != 0) kept.push_back(i);
    std::vector<size_t> expected(40);
    std::iota(expected.begin(), expected.end(), 0);
    expected.push_back(4000);
    expected.push_back(4096);  // the last chunk of 50 keeps max(1, round(0.5)) = 1
    EXPECT_EQ(kept, expected);
}

TEST(TopkCodec, EightBitValuesAreCloseAndTheLargestExact) {
    const auto x = gaussian(4096, 6);
    const auto y = Codec("topk", kTopk8).round_trip(x);
    float absmax = 0;
    for (float v : x) absmax = std::max(absmax, std::fabs(v));
    for (size_t i = 0; i < x.size(); ++i) {
        if (y[i] == 0) continue;
        EXPECT_LE(std::fabs(x[i] - y[i]), absmax / 254 * (1 + 1e-6)) << i;
        if (std::fabs(x[i]) == absmax) {
            EXPECT_EQ(y[i], x[i]);
        }
    }
}

TEST(TopkCodec, ZerosAndEmptyInput) {
    for (const auto& settings : {std::map<std::string, SettingValue>{}, kTopk8}) {
        const Codec codec("topk", settings);
        EXPECT_EQ(codec.round_trip({}), std::vector<float>{});
        EXPECT_EQ(codec.encode({}).size(), 32u);
        EXPECT_EQ(codec.round_trip(std::vector<float>(5000, 0.0f)), std::vector<float>(5000, 0.0f));
        EXPECT_EQ(codec.round_trip({-1.5f}), std::vector<float>{-1.5f}) << "one value is kept whole";
    }
}

// error_bound() = 1: no round trip loses more than the input, however the values are spread.
TEST(TopkCodec, NeverLosesMoreThanTheInput) {
    std::mt19937 rng(8);
    std::uniform_real_distribution<float> exponent(-140.0f, 120.0f);
    for (const auto& settings : {std::map<std::string, SettingValue>{}, kTopk8, kTopkSmall}) {
        const Codec codec("topk", settings);
        EXPECT_EQ(codec.error_bound(), 1.0);
        for (int trial = 0; trial < 50; ++trial) {
            std::vector<float> x(1000);
            for (auto& v : x) v = (rng() % 2 ? -1.0f : 1.0f) * std::exp2(trial % 2 ? exponent(rng) / 8 : exponent(rng));
            const double error = relative_l2(x, codec.round_trip(x));
            ASSERT_LE(error, 1.0) << trial;
        }
    }
}

// log8 scales: one fp32 top per frame and a byte per block, the block's table top being
// top * 2^(-k/16), the smallest at or above its absmax.
const std::map<std::string, SettingValue> kLog8 = {{"scale", std::string("log8")}, {"block_size", int64_t{16}}};

TEST(Fp4Log8, FrameLayoutAndRatio) {
    for (const size_t n : {size_t{0}, size_t{1}, size_t{17}, size_t{1} << 20}) {
        const auto bytes = Codec("fp4", kLog8).encode(gaussian(n, 5));
        EXPECT_EQ(bytes.size(), 24 + 4 + (n + 15) / 16 + (n + 1) / 2) << n;
        EXPECT_EQ(bytes[4], 2) << "frame version 2: log8 scales";
    }
    EXPECT_NEAR(4.0 * (1 << 20) / Codec("fp4", kLog8).encode(gaussian(1 << 20, 2)).size(), 7.11, 0.01);
}

TEST(Fp4Log8, BlockTopsAreExactPowersOfTheFramesTop) {
    // Block b holds its largest level at 2^(-b) of the frame's top: k = 16 b, an exact table, so
    // values on the e2m1 grid come back exactly; the frame's top block is exact as with fp32.
    const float e2m1[] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    std::mt19937 rng(9);
    std::vector<float> x(16 * 10);
    for (size_t i = 0; i < x.size(); ++i) {
        const float magnitude = i % 16 == 3 ? 6.0f : e2m1[rng() % 8];
        x[i] = (rng() % 2 ? -magnitude : magnitude) * std::ldexp(1.0f, -static_cast<int>(i / 16));
    }
    EXPECT_EQ(Codec("fp4", kLog8).round_trip(x), x);
    // A block 2^-20 below the top uses k = 255 (2^-15.94): its values are kept to the nearest
    // entry of that table, here all rounding to 0, the error at most each value.
    std::vector<float> y(32, 0x1p-21f);
    y[0] = 1.0f;
    const auto back = Codec("fp4", kLog8).round_trip(y);
    EXPECT_EQ(back[0], 1.0f);
    for (size_t i = 16; i < 32; ++i) EXPECT_LE(std::fabs(back[i] - y[i]), std::fabs(y[i]));
    EXPECT_EQ(Codec("fp4", kLog8).error_bound(), 1.0);
}

TEST(Fp4Log8, LessErrorThanFp32ScalesAtTheSameSize) {
    const auto x = gaussian(1 << 20, 1);
    std::vector<float> heavy = x;  // blocks of widely varying magnitude, as pseudo-gradients have
    for (size_t i = 0; i < heavy.size(); ++i) heavy[i] *= std::exp2(static_cast<float>((i / 16) % 11) - 5);
    for (const std::vector<float>* data : std::vector<const std::vector<float>*>{&x, &heavy}) {
        const double fp32_64 = relative_l2(*data, Codec("fp4", kFp32Scales).round_trip(*data));
        const double log8_16 = relative_l2(*data, Codec("fp4", kLog8).round_trip(*data));
        std::printf("relative L2 error, %s: fp32 scales per 64 %.4f, log8 scales per 16 %.4f\n",
                    data == &x ? "Gaussian" : "Gaussian x 2^(0..10) per block", fp32_64, log8_16);
        EXPECT_LT(log8_16, 0.85 * fp32_64);
        EXPECT_LT(log8_16, 0.086);  // docs/plugins/compress.md: 8.5%
    }
}

TEST(Fp4Log8, EitherLayoutDecodesWithEitherSetting) {
    const auto x = gaussian(1000, 6);
    const Codec fp32("fp4", kFp32Scales), log8("fp4", kLog8);
    EXPECT_EQ(log8.decode(fp32.encode(x), x.size()), fp32.round_trip(x));
    EXPECT_EQ(fp32.decode(log8.encode(x), x.size()), log8.round_trip(x));
    auto bad = log8.encode(x);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(bad.data() + 24, &nan, sizeof nan);
    log8.expect_corrupt(bad, x.size(), "a NaN top");
}

// ------------------------------------------------------------------ both

TEST(Fp4TopkAccuracy, RelativeErrorOnGaussianData) {
    const auto x = gaussian(1 << 20, 1);
    const double e2m1 = relative_l2(x, Codec("fp4", kFp32Scales).round_trip(x));
    const double e3m0 = relative_l2(x, Codec("fp4", kE3M0).round_trip(x));
    const double topk2 = relative_l2(x, Codec("topk").round_trip(x));
    const double topk8 = relative_l2(x, Codec("topk", kTopk8).round_trip(x));
    const double small = relative_l2(x, Codec("topk", kTopkSmall).round_trip(x));
    std::printf("relative L2 error, Gaussian 1M: fp4 e2m1 %.4f, fp4 e3m0 %.4f, topk %.4f, topk 8-bit %.4f, "
                "topk chunk=100 density=0.05 %.4f\n",
                e2m1, e3m0, topk2, topk8, small);
    EXPECT_LT(e2m1, 0.107);  // docs/plugins/compress.md: 10.6%
    EXPECT_LT(e3m0, 0.19);   // 18.8%
    // Keeping 1% of a Gaussian keeps 8.5% of its energy: sqrt(0.915) = 0.957 is the floor.
    EXPECT_LT(topk2, 0.960);
    EXPECT_LT(topk8, 0.958);
    EXPECT_LT(small, 0.92);
    EXPECT_LT(topk8, topk2);
}

TEST(Fp4TopkFormat, CompressionRatios) {
    for (const size_t n : {size_t{1} << 20, size_t{4096}, size_t{262144}}) {
        const auto x = gaussian(n, 2);
        const double raw = 4.0 * n;
        const size_t fp4 = Codec("fp4", kFp32Scales).encode(x).size();
        EXPECT_EQ(fp4, 24 + 4 * ((n + 63) / 64) + (n + 1) / 2);
        EXPECT_GE(raw / fp4, 7.0) << n;
        EXPECT_EQ(Codec("fp4", kE3M0).encode(x).size(), fp4);
        const size_t topk = Codec("topk").encode(x).size();
        EXPECT_LE(topk, raw / 110) << n;
        EXPECT_EQ(topk, Codec("topk").max_size(n)) << "topk frames have a fixed size";
        if (n == size_t{1} << 20)
            std::printf("ratio at 2^20: fp4 %.3f, topk %.1f, topk 8-bit %.1f, topk chunk=100 density=0.05 %.1f\n",
                        raw / fp4, raw / topk, raw / Codec("topk", kTopk8).encode(x).size(),
                        raw / Codec("topk", kTopkSmall).encode(x).size());
    }
    EXPECT_NEAR(4.0 * (1 << 20) / Codec("fp4").encode(gaussian(1 << 20, 2)).size(), 7.11, 0.01);
}

const std::vector<std::pair<std::string, std::map<std::string, SettingValue>>> kConfigs = {
    {"fp4", {}}, {"fp4", kFp32Scales}, {"fp4", kE3M0}, {"topk", {}}, {"topk", kTopk8}, {"topk", kTopkSmall}};

TEST(Fp4TopkFormat, Capabilities) {
    EXPECT_EQ(Codec("fp4").capabilities(), PANGEA_COMPRESS_CAP_ERROR_FEEDBACK);
    EXPECT_EQ(Codec("topk").capabilities(), PANGEA_COMPRESS_CAP_ERROR_FEEDBACK | PANGEA_COMPRESS_CAP_GATHER);
}

TEST(Fp4TopkDeterminism, SameBytesEveryTime) {
    const auto x = gaussian(70000, 9);
    for (const auto& [plugin, settings] : kConfigs) {
        const Codec a(plugin, settings), b(plugin, settings);
        const auto bytes = a.encode(x);
        EXPECT_EQ(a.encode(x), bytes) << plugin;
        EXPECT_EQ(b.encode(x), bytes) << plugin;
        EXPECT_EQ(a.decode(bytes, x.size()), b.decode(bytes, x.size())) << plugin;
    }
}

TEST(Fp4TopkMalformed, NonFiniteInputIsRefusedWithItsIndex) {
    for (const auto& [plugin, settings] : kConfigs)
        for (float bad : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
            auto x = gaussian(9000, 10);
            x[4321] = bad;
            const Codec codec(plugin, settings);
            EXPECT_EQ(codec.encode_status(x, codec.max_size(x.size())), PANGEA_ERR_INVALID_DATA) << plugin;
            EXPECT_THAT(codec.last_error(), ::testing::HasSubstr("value 4321")) << plugin;
        }
}

TEST(Fp4TopkMalformed, TooSmallCapacity) {
    const auto x = gaussian(1000, 11);
    for (const auto& [plugin, settings] : kConfigs) {
        const Codec codec(plugin, settings);
        const size_t needed = codec.encode(x).size();
        EXPECT_EQ(codec.encode_status(x, needed - 1), PANGEA_ERR_CAPACITY) << plugin;
        EXPECT_EQ(codec.encode_status(x, needed), PANGEA_OK) << plugin;
    }
}

TEST(Fp4TopkMalformed, HeaderFlipsTruncationAndExtraBytesAreCorrupt) {
    for (const auto& [plugin, settings] : kConfigs)
        for (const size_t n : {size_t{1001}, size_t{5000}}) {
            const Codec codec(plugin, settings);
            const auto bytes = codec.encode(gaussian(n, 12));
            const size_t header = plugin == "fp4" ? 24 : 32;
            for (size_t at = 0; at < header; ++at) {
                auto flipped = bytes;
                flipped[at] ^= 0xff;
                codec.expect_corrupt(flipped, n, plugin + " header byte " + std::to_string(at) + " flipped");
            }
            for (size_t size = 0; size < bytes.size(); size += (size < 64 ? 1 : 37))
                codec.expect_corrupt({bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size)}, n,
                                     plugin + " truncated to " + std::to_string(size));
            codec.expect_corrupt({bytes.begin(), bytes.end() - 1}, n, plugin + " one byte short");
            auto longer = bytes;
            longer.push_back(0);
            codec.expect_corrupt(longer, n, plugin + " one byte long");
            codec.expect_corrupt(bytes, n - 1, plugin + " n one less");
            codec.expect_corrupt(bytes, n + 1, plugin + " n one more");
        }
}

TEST(Fp4Malformed, BadScalesAndPaddingAreCorrupt) {
    const Codec codec("fp4", kFp32Scales);
    const size_t n = 1001;  // odd: the last byte has an unused high nibble
    const auto bytes = codec.encode(gaussian(n, 13));
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), -1.0f, -0.0f}) {
        auto broken = bytes;
        put_float(broken, 24 + 4 * 7, bad);  // block 7's absmax
        codec.expect_corrupt(broken, n, "absmax " + std::to_string(bad));
    }
    auto padded = bytes;
    padded.back() |= 0x10;
    codec.expect_corrupt(padded, n, "a non-zero padding nibble");
}

// A test-side reader and writer of a topk chunk's bit stream (docs/plugins/compress.md).
struct TopkChunk {
    std::vector<uint32_t> indices, codes;
};

TopkChunk read_chunk(const std::vector<uint8_t>& bytes, size_t at, size_t k, unsigned index_bits, unsigned value_bits) {
    TopkChunk chunk;
    size_t bit = at * 8;
    auto get = [&](unsigned width) {
        uint32_t value = 0;
        for (unsigned b = 0; b < width; ++b, ++bit) value |= uint32_t((bytes[bit / 8] >> (bit % 8)) & 1u) << b;
        return value;
    };
    for (size_t j = 0; j < k; ++j) chunk.indices.push_back(get(index_bits));
    for (size_t j = 0; j < k; ++j) chunk.codes.push_back(get(value_bits));
    return chunk;
}

void write_chunk(std::vector<uint8_t>& bytes, size_t at, const TopkChunk& chunk, unsigned index_bits, unsigned value_bits) {
    size_t bit = at * 8;
    auto put = [&](uint32_t value, unsigned width) {
        for (unsigned b = 0; b < width; ++b, ++bit) {
            const uint8_t mask = static_cast<uint8_t>(1u << (bit % 8));
            bytes[bit / 8] = static_cast<uint8_t>(((value >> b) & 1u) ? bytes[bit / 8] | mask : bytes[bit / 8] & ~mask);
        }
    };
    for (uint32_t index : chunk.indices) put(index, index_bits);
    for (uint32_t code : chunk.codes) put(code, value_bits);
}

TEST(TopkMalformed, BadIndicesCodesScalesAndPaddingAreCorrupt) {
    // chunk 100, density 0.05: 5 indices of 7 bits per chunk; 2-bit values: lo and hi first.
    const Codec codec("topk", kTopkSmall);
    const size_t n = 1050;  // 10 full chunks and one of 50 (which keeps round(2.5) = 3)
    const auto bytes = codec.encode(gaussian(n, 14));
    const size_t chunk_bytes = 8 + (5 * (7 + 2) + 7) / 8;
    ASSERT_EQ(bytes.size(), 32 + 10 * chunk_bytes + 8 + (3 * 9 + 7) / 8);
    const size_t at = 32 + 3 * chunk_bytes;  // chunk 3
    const TopkChunk good = read_chunk(bytes, at + 8, 5, 7, 2);
    ASSERT_TRUE(std::is_sorted(good.indices.begin(), good.indices.end()));
    {  // the test's reader agrees with the codec: rewriting what was read changes nothing
        auto same = bytes;
        write_chunk(same, at + 8, good, 7, 2);
        ASSERT_EQ(same, bytes);
    }
    auto with_indices = [&](std::vector<uint32_t> indices, const std::string& what) {
        auto broken = bytes;
        write_chunk(broken, at + 8, {std::move(indices), good.codes}, 7, 2);
        codec.expect_corrupt(broken, n, what);
    };
    auto indices = good.indices;
    indices[2] = indices[1];
    with_indices(indices, "a duplicate index");
    indices = good.indices;
    std::swap(indices[0], indices[1]);
    with_indices(indices, "decreasing indices");
    indices = good.indices;
    indices[4] = 100;
    with_indices(indices, "index 100 in a chunk of 100");
    indices[4] = 127;
    with_indices(indices, "index 127 in a chunk of 100");
    {  // the last chunk has 50 values
        const size_t last = 32 + 10 * chunk_bytes;
        TopkChunk tail = read_chunk(bytes, last + 8, 3, 7, 2);
        tail.indices[2] = 50;
        auto broken = bytes;
        write_chunk(broken, last + 8, tail, 7, 2);
        codec.expect_corrupt(broken, n, "index 50 in the last chunk of 50");
    }
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity(), -0.0f}) {
        auto broken = bytes;
        put_float(broken, at, bad);
        codec.expect_corrupt(broken, n, "level lo " + std::to_string(bad));
    }
    {
        auto broken = bytes;
        put_float(broken, at, 1e30f);
        codec.expect_corrupt(broken, n, "lo above hi");
    }
    {  // 5 * 9 = 45 bits of 48: the top 3 bits of the chunk's last byte are padding
        auto broken = bytes;
        broken[at + chunk_bytes - 1] |= 0x80;
        codec.expect_corrupt(broken, n, "non-zero padding");
    }
    {  // the header's counts: kept values of a full chunk and of the last one
        auto broken = bytes;
        broken[12] = 6;
        codec.expect_corrupt(broken, n, "k 6 for chunks encoded with 5");
        broken = bytes;
        broken[16] = 2;
        codec.expect_corrupt(broken, n, "k 2 for the last chunk encoded with 3");
        broken = bytes;
        broken[16] = 51;
        codec.expect_corrupt(broken, n, "k 51 for a last chunk of 50");
    }

    // 8 bits: the code -128 is never written.
    const Codec eight("topk", {{"chunk", int64_t{100}}, {"density", 0.05}, {"value_bits", int64_t{8}}});
    const auto bytes8 = eight.encode(gaussian(n, 15));
    const size_t at8 = 32 + 2 * (4 + (5 * 15 + 7) / 8);  // chunk 2
    TopkChunk chunk = read_chunk(bytes8, at8 + 4, 5, 7, 8);
    chunk.codes[1] = 0x80;
    auto broken = bytes8;
    write_chunk(broken, at8 + 4, chunk, 7, 8);
    eight.expect_corrupt(broken, n, "code -128");
    broken = bytes8;
    put_float(broken, at8, std::numeric_limits<float>::infinity());
    eight.expect_corrupt(broken, n, "an infinite scale");
}

TEST(TopkMalformed, AFrameOfOtherSettingsStillDecodes) {
    // The decoder reads chunk, k and value bits from the header, as int8 and fp16 do.
    const auto x = gaussian(5000, 16);
    const auto bytes = Codec("topk", kTopkSmall).encode(x);
    EXPECT_EQ(Codec("topk").decode(bytes, x.size()), Codec("topk", kTopkSmall).decode(bytes, x.size()));
    const auto fp4 = Codec("fp4", kE3M0).encode(x);
    EXPECT_EQ(Codec("fp4", kFp32Scales).decode(fp4, x.size()), Codec("fp4", kE3M0).decode(fp4, x.size()));
}

}  // namespace
}  // namespace pangea
