// Accuracy, exactness, determinism and malformed input for the built-in compression plugins,
// loaded through the plugin host as in a run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "pangea/compress.h"
#include "plugin_host/plugin_instance.hpp"

namespace pangea {
namespace {

// ------------------------------------------------------------------ inputs

std::vector<float> gaussian(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> out(n);
    for (auto& v : out) v = normal(rng);
    return out;
}

std::vector<float> student_t(size_t n, uint32_t seed) {  // heavy tails: 3 degrees of freedom
    std::mt19937 rng(seed);
    std::student_t_distribution<float> t(3.0f);
    std::vector<float> out(n);
    for (auto& v : out) v = t(rng);
    return out;
}

std::vector<float> sparse(size_t n, uint32_t seed) {  // 90% exact zeros
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1e-3f);
    std::uniform_real_distribution<float> coin(0.0f, 1.0f);
    std::vector<float> out(n);
    for (auto& v : out) v = coin(rng) < 0.9f ? 0.0f : normal(rng);
    return out;
}

struct Input {
    const char* name;
    std::vector<float> (*make)(size_t, uint32_t);
};
const Input kInputs[] = {{"gaussian", gaussian}, {"student_t3", student_t}, {"sparse", sparse}};
const size_t kSizes[] = {1, 1000, 4097, 1 << 20};

// ------------------------------------------------------------------ codec through the host

class Codec {
public:
    Codec(const std::string& plugin, const std::map<std::string, SettingValue>& overrides)
        : registry_(std::vector<SearchPath>{{PANGEA_TEST_BUILTIN_PLUGINS, "build tree"}}) {
        const PluginDescriptor& descriptor = registry_.get(PANGEA_KIND_COMPRESS, plugin);
        SettingMap settings = descriptor.default_settings();
        for (const auto& [key, value] : overrides) settings[key] = {value, "test"};
        instance_ = std::make_unique<PluginInstance>(descriptor, settings);
        vt_ = &instance_->vtable<pangea_compress_vtable>();
    }

    std::vector<uint8_t> encode(const std::vector<float>& x) const {
        std::vector<uint8_t> out(vt_->max_encoded_size(instance_->handle(), x.size()));
        size_t written = 0;
        const pangea_status status =
            vt_->encode(instance_->handle(), x.data(), x.size(), out.data(), out.size(), &written);
        EXPECT_EQ(status, PANGEA_OK) << instance_->last_error();
        out.resize(written);
        return out;
    }
    pangea_status encode_status(const std::vector<float>& x) const {
        std::vector<uint8_t> out(vt_->max_encoded_size(instance_->handle(), x.size()));
        size_t written = 0;
        return vt_->encode(instance_->handle(), x.data(), x.size(), out.data(), out.size(), &written);
    }
    std::vector<float> decode(const std::vector<uint8_t>& bytes, size_t n) const {
        std::vector<float> out(n);
        const pangea_status status =
            vt_->decode(instance_->handle(), bytes.data(), bytes.size(), out.data(), n);
        EXPECT_EQ(status, PANGEA_OK) << instance_->last_error();
        return out;
    }
    pangea_status decode_status(const std::vector<uint8_t>& bytes, size_t n) const {
        std::vector<float> acc(n, 1.0f);
        const pangea_status status =
            vt_->decode_accumulate(instance_->handle(), bytes.data(), bytes.size(), acc.data(), n);
        for (float v : acc) EXPECT_EQ(v, 1.0f) << "a failed decode_accumulate wrote";
        return status;
    }
    std::vector<float> round_trip(const std::vector<float>& x) const { return decode(encode(x), x.size()); }
    std::string last_error() const { return instance_->last_error(); }

private:
    PluginRegistry registry_;
    std::unique_ptr<PluginInstance> instance_;
    const pangea_compress_vtable* vt_ = nullptr;
};

double relative_l2(const std::vector<float>& x, const std::vector<float>& y) {
    double error = 0, norm = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        error += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
        norm += double(x[i]) * x[i];
    }
    return norm == 0 ? std::sqrt(error) : std::sqrt(error / norm);
}

float ulp(float x) { return std::nextafter(std::fabs(x), std::numeric_limits<float>::infinity()) - std::fabs(x); }

// ------------------------------------------------------------------ accuracy

TEST(CompressAccuracy, RelativeErrorOnGaussianDataAtDefaults) {
    const auto x = gaussian(1 << 20, 1);
    const double int8 = relative_l2(x, Codec("int8", {}).round_trip(x));
    const double sigma = relative_l2(x, Codec("int8", {{"scheme", std::string("sigma")}}).round_trip(x));
    const double fp16 = relative_l2(x, Codec("fp16", {}).round_trip(x));
    const double bf16 = relative_l2(x, Codec("fp16", {{"format", std::string("bf16")}}).round_trip(x));
    RecordProperty("int8_minmax", std::to_string(int8));
    std::printf("relative L2 error, Gaussian 1M: int8 minmax %.5f, int8 sigma %.5f, fp16 %.6f, bf16 %.5f\n",
                int8, sigma, fp16, bf16);
    EXPECT_LT(int8, 0.01);
    EXPECT_LT(sigma, 0.02);  // clipping at 3 sigma (prime's choice) costs the tails: about 1.6%
    EXPECT_LT(fp16, 0.001);
    EXPECT_LT(bf16, 0.01);
}

// |x - decoded| within each scheme's analytic bound, for every input shape and size.
TEST(CompressAccuracy, Int8MinMaxErrorWithinHalfAStepPerBlock) {
    const size_t block = 1024;
    Codec codec("int8", {});
    for (const auto& input : kInputs)
        for (size_t n : kSizes) {
            const auto x = input.make(n, 2);
            const auto y = codec.round_trip(x);
            for (size_t first = 0; first < n; first += block) {
                const size_t last = std::min(n, first + block);
                const auto [lo, hi] = std::minmax_element(x.begin() + first, x.begin() + last);
                const float step = (*hi - *lo) / 255.0f;
                const float bound = step * 0.5f * 1.0001f + 4 * ulp(std::max(std::fabs(*lo), std::fabs(*hi)));
                for (size_t i = first; i < last; ++i)
                    ASSERT_LE(std::fabs(x[i] - y[i]), bound) << input.name << " n=" << n << " i=" << i;
            }
        }
}

TEST(CompressAccuracy, Int8SigmaErrorWithinABinPlusTheClippedSpread) {
    const size_t block = 65536;
    const double clip = 3.0;
    Codec codec("int8", {{"scheme", std::string("sigma")}});
    for (const auto& input : kInputs)
        for (size_t n : kSizes) {
            const auto x = input.make(n, 3);
            const auto y = codec.round_trip(x);
            for (size_t first = 0; first < n; first += block) {
                const size_t last = std::min(n, first + block);
                double sum = 0, squares = 0;
                for (size_t i = first; i < last; ++i) sum += x[i];
                const double mean = sum / double(last - first);
                for (size_t i = first; i < last; ++i) squares += (x[i] - mean) * (x[i] - mean);
                const double sigma = std::sqrt(squares / double(last - first));
                const auto [mn, mx] = std::minmax_element(x.begin() + first, x.begin() + last);
                const double lo = std::max<double>(*mn, mean - clip * sigma);
                const double hi = std::min<double>(*mx, mean + clip * sigma);
                const double width = (hi - lo) / 256.0;
                // A value reads back as the mean of its bin. Interior bins are `width` wide; the
                // two edge bins also hold the clipped values, so they spread up to the farthest
                // clipped value.
                const double clipped = std::max(lo - *mn, *mx - hi);
                for (size_t i = first; i < last; ++i) {
                    const double bound = clipped + width * 1.001 + 4 * ulp(float(std::max(std::fabs(*mn), std::fabs(*mx))));
                    ASSERT_LE(std::fabs(double(x[i]) - y[i]), bound) << input.name << " n=" << n << " i=" << i;
                }
            }
        }
}

TEST(CompressAccuracy, SixteenBitFormatsWithinHalfAnUlp) {
    for (const char* format : {"fp16", "bf16"}) {
        const bool half = std::string(format) == "fp16";
        Codec codec("fp16", {{"format", std::string(format)}});
        for (const auto& input : kInputs)
            for (size_t n : kSizes) {
                auto x = input.make(n, 4);
                if (half && n > 3) x[3] = 1e5f;  // beyond fp16: saturates
                const auto y = codec.round_trip(x);
                for (size_t i = 0; i < n; ++i) {
                    const float a = std::fabs(x[i]);
                    double bound;
                    if (half)
                        bound = a > 65504.0f ? a - 65504.0f : a >= 0x1p-14f ? a * 0x1p-11 : 0x1p-25;
                    else
                        bound = a * 0x1p-8 + 0x1p-133;
                    ASSERT_LE(std::fabs(double(x[i]) - y[i]), bound) << format << " " << input.name << " i=" << i;
                }
            }
    }
}

TEST(CompressAccuracy, SaturationIsCountedAndLogged) {
    const Codec codec("fp16", {});
    auto x = gaussian(1000, 6);
    x[1] = 7e4f;
    x[2] = -1e9f;
    x[3] = 65504.0f;  // the largest half: not saturated
    ::testing::internal::CaptureStderr();
    const auto y = codec.round_trip(x);
    const std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_THAT(log, ::testing::HasSubstr("[compress/fp16] 2 of 1000 values exceeded the fp16 range "
                                          "(+-65504) and were saturated in this encode; 2 so far"));
    EXPECT_EQ(y[1], 65504.0f);
    EXPECT_EQ(y[2], -65504.0f);
    EXPECT_EQ(y[3], 65504.0f);
    const Codec bf16("fp16", {{"format", std::string("bf16")}});
    ::testing::internal::CaptureStderr();
    const auto z = bf16.round_trip({3.4028235e38f, 1.0f});  // FLT_MAX rounds past bf16's largest
    EXPECT_THAT(::testing::internal::GetCapturedStderr(), ::testing::HasSubstr("1 of 2 values exceeded the bf16 range"));
    EXPECT_EQ(z[0], 3.38953139e38f);
}

// ------------------------------------------------------------------ exactness

TEST(CompressExact, Int8RepresentableValuesRoundTripExactly) {
    Codec codec("int8", {{"block_size", int64_t{256}}});
    std::vector<float> x(1024);
    for (size_t i = 0; i < 256; ++i) x[i] = float(i);                 // min 0, step 1
    for (size_t i = 256; i < 512; ++i) x[i] = -64.0f + float(i - 256) * 0.5f;  // step 0.5
    for (size_t i = 512; i < 768; ++i) x[i] = 3.7f;                    // a constant block
    for (size_t i = 768; i < 1024; ++i) x[i] = -0.0f;                  // -0 reads back as 0
    const auto y = codec.round_trip(x);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], x[i]) << i;
    for (const char* scheme : {"minmax", "sigma"})
        EXPECT_EQ(Codec("int8", {{"scheme", std::string(scheme)}}).round_trip({2.5f, 2.5f}),
                  (std::vector<float>{2.5f, 2.5f})) << scheme;
}

TEST(CompressExact, SixteenBitRepresentableValuesRoundTripExactly) {
    std::vector<float> halves, bfloats;
    for (uint32_t word = 0; word < 65536; ++word) {
        if ((word & 0x7c00u) != 0x7c00u) {  // every finite half, subnormals included
            const uint32_t sign = (word & 0x8000u) << 16, exponent = (word >> 10) & 0x1fu, mantissa = word & 0x3ffu;
            float value = exponent == 0 ? float(mantissa) * 0x1p-24f
                                        : std::ldexp(1.0f + float(mantissa) / 1024.0f, int(exponent) - 15);
            if (sign) value = -value;
            halves.push_back(value);
        }
        if ((word & 0x7f80u) != 0x7f80u) {  // every finite bfloat16
            const uint32_t bits = word << 16;
            float value;
            std::memcpy(&value, &bits, 4);
            bfloats.push_back(value);
        }
    }
    for (const char* kernel : {"auto", "scalar"}) {
        const auto h = Codec("fp16", {{"kernel", std::string(kernel)}}).round_trip(halves);
        const auto b = Codec("fp16", {{"format", std::string("bf16")}, {"kernel", std::string(kernel)}}).round_trip(bfloats);
        for (size_t i = 0; i < halves.size(); ++i)
            ASSERT_EQ(std::memcmp(&h[i], &halves[i], 4), 0) << kernel << " half " << halves[i];
        for (size_t i = 0; i < bfloats.size(); ++i)
            ASSERT_EQ(std::memcmp(&b[i], &bfloats[i], 4), 0) << kernel << " bfloat " << bfloats[i];
    }
}

// ------------------------------------------------------------------ determinism

// Inputs that stress rounding: ties, subnormals, values at the format limits, signed zeros.
std::vector<float> awkward_values() {
    std::vector<float> x = gaussian(1 << 20, 9);
    std::mt19937 rng(5);
    for (size_t i = 0; i < x.size(); i += 7) {
        uint32_t bits = rng();
        if ((bits & 0x7f800000u) == 0x7f800000u) bits &= 0xbfffffffu;  // keep it finite
        std::memcpy(&x[i], &bits, 4);
    }
    for (size_t i = 3; i < x.size(); i += 11) x[i] = float(i % 4096) * 0x1p-24f + 0x1p-25f;  // half ties
    for (size_t i = 5; i < x.size(); i += 13) x[i] = (i & 1) ? 65519.0f : -65520.0f;
    for (size_t i = 6; i < x.size(); i += 17) x[i] = (i & 1) ? -0.0f : 0.0f;
    return x;
}

std::vector<float> moderate_values() {  // int8's range check refuses spans beyond FLT_MAX
    auto x = student_t(1 << 20, 10);
    for (size_t i = 6; i < x.size(); i += 17) x[i] = (i & 1) ? -0.0f : 0.0f;
    return x;
}

struct Config {
    const char* plugin;
    std::map<std::string, SettingValue> settings;
    std::vector<float> (*input)();
};

TEST(CompressDeterminism, BytesIdenticalAcrossKernelsAndThreadCounts) {
    const std::vector<Config> configs = {
        {"int8", {}, moderate_values},
        {"int8", {{"scheme", std::string("sigma")}}, moderate_values},
        {"fp16", {}, awkward_values},
        {"fp16", {{"format", std::string("bf16")}}, awkward_values},
    };
    for (const auto& config : configs) {
        const auto x = config.input();
        auto settings = config.settings;
        settings["kernel"] = std::string("scalar");
        const Codec reference(config.plugin, settings);
        const auto expected = reference.encode(x);
        const auto expected_decode = reference.decode(expected, x.size());
        for (const char* kernel : {"auto", "scalar"})
            for (int64_t threads : {1, 3, 8}) {
                settings["kernel"] = std::string(kernel);
                settings["threads"] = threads;
                const Codec codec(config.plugin, settings);
                const auto bytes = codec.encode(x);
                ASSERT_EQ(bytes, expected) << config.plugin << " kernel " << kernel << " threads " << threads;
                const auto decoded = codec.decode(bytes, x.size());
                ASSERT_EQ(std::memcmp(decoded.data(), expected_decode.data(), 4 * x.size()), 0)
                    << config.plugin << " decode differs, kernel " << kernel << " threads " << threads;
            }
    }
}

// ------------------------------------------------------------------ refused and malformed input

TEST(CompressMalformed, NonFiniteInputIsRefusedWithItsIndex) {
    for (const char* plugin : {"int8", "fp16"})
        for (float bad : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
            auto x = gaussian(5000, 1);
            x[4321] = bad;
            const Codec codec(plugin, {});
            EXPECT_EQ(codec.encode_status(x), PANGEA_ERR_INVALID_DATA) << plugin;
            EXPECT_THAT(codec.last_error(), ::testing::HasSubstr("value 4321 is")) << plugin;
        }
    const Codec codec("int8", {});
    EXPECT_EQ(codec.encode_status({-3e38f, 3e38f}), PANGEA_ERR_INVALID_DATA);
    EXPECT_THAT(codec.last_error(), ::testing::HasSubstr("spans more than the float range"));
}

TEST(CompressMalformed, CorruptFramesAreRefusedAndTouchNothing) {
    const auto x = gaussian(3000, 2);
    for (const char* plugin : {"int8", "fp16"}) {
        const Codec codec(plugin, {});
        const auto good = codec.encode(x);
        auto with = [&](size_t offset, std::vector<uint8_t> patch) {
            auto bytes = good;
            std::memcpy(bytes.data() + offset, patch.data(), patch.size());
            return bytes;
        };
        EXPECT_EQ(codec.decode_status(with(0, {'X'}), x.size()), PANGEA_ERR_CORRUPT) << plugin << " magic";
        EXPECT_EQ(codec.decode_status(with(4, {9}), x.size()), PANGEA_ERR_CORRUPT) << plugin << " version";
        EXPECT_EQ(codec.decode_status(with(5, {7}), x.size()), PANGEA_ERR_CORRUPT) << plugin << " scheme";
        EXPECT_EQ(codec.decode_status(with(6, {1}), x.size()), PANGEA_ERR_CORRUPT) << plugin << " reserved";
        EXPECT_EQ(codec.decode_status(with(16, {1}), x.size()), PANGEA_ERR_CORRUPT) << plugin << " count";
        EXPECT_EQ(codec.decode_status(good, x.size() + 1), PANGEA_ERR_CORRUPT) << plugin << " n";
        EXPECT_EQ(codec.decode_status(std::vector<uint8_t>(good.begin(), good.begin() + 10), x.size()),
                  PANGEA_ERR_CORRUPT) << plugin << " short header";
        // A non-finite value where the encoder never writes one.
        const std::vector<uint8_t> nan_float = {0x00, 0x00, 0xc0, 0x7f};
        const size_t value_offset = std::string(plugin) == "int8" ? 24 + 4 : 24 + 2 * 100;
        EXPECT_EQ(codec.decode_status(with(value_offset, std::string(plugin) == "int8"
                                                             ? nan_float
                                                             : std::vector<uint8_t>{0x00, 0x7c}),
                                      x.size()),
                  PANGEA_ERR_CORRUPT) << plugin << " non-finite";
        EXPECT_FALSE(codec.last_error().empty());
    }
    const Codec int8("int8", {});
    auto bytes = int8.encode(x);
    const float negative_scale = -1.0f;
    std::memcpy(bytes.data() + 24 + 4, &negative_scale, 4);
    EXPECT_EQ(int8.decode_status(bytes, x.size()), PANGEA_ERR_CORRUPT);
}

TEST(CompressMalformed, Int8FrameWhoseCodesWouldDecodeToInfinityIsCorrupt) {
    const Codec codec("int8", {});
    auto bytes = codec.encode({0.0f, 1.0f});
    const float huge_scale = 3e36f;  // finite, but 255 * scale is not
    std::memcpy(bytes.data() + 24 + 4, &huge_scale, 4);
    EXPECT_EQ(codec.decode_status(bytes, 2), PANGEA_ERR_CORRUPT);
    EXPECT_THAT(codec.last_error(), ::testing::HasSubstr("decodes past the float range"));
}

TEST(CompressAccuracy, Int8BlockWithATinyRangeStaysWithinItsRange) {
    for (const char* kernel : {"auto", "scalar"}) {
        const Codec codec("int8", {{"kernel", std::string(kernel)}});
        const std::vector<float> x = {0.0f, 1e-37f, 5e-38f};  // 255 / range overflows float
        const auto bytes = codec.encode(x);
        const auto y = codec.decode(bytes, x.size());
        for (size_t i = 0; i < x.size(); ++i) EXPECT_LE(std::fabs(x[i] - y[i]), 1e-37f) << kernel;
        EXPECT_EQ(bytes, Codec("int8", {{"kernel", std::string("scalar")}}).encode(x));
    }
}

TEST(CompressMalformed, Int8BlockSizeBelowSixteenIsAConfigError) {
    try {
        Codec codec("int8", {{"block_size", int64_t{8}}});
        FAIL();
    } catch (const PluginError& e) {
        EXPECT_THAT(e.what(), ::testing::HasSubstr("block_size 8 is too small"));
    }
}

TEST(CompressFormat, CompressionRatios) {
    const size_t n = 1 << 20;
    const auto x = gaussian(n, 1);
    const double raw = 4.0 * n;
    EXPECT_NEAR(raw / Codec("int8", {}).encode(x).size(), 3.97, 0.01);
    EXPECT_NEAR(raw / Codec("int8", {{"scheme", std::string("sigma")}}).encode(x).size(), 3.94, 0.01);
    EXPECT_NEAR(raw / Codec("fp16", {}).encode(x).size(), 2.0, 0.001);
}

}  // namespace
}  // namespace pangea
