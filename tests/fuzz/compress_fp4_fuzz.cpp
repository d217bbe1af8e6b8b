// compress/fp4's decoder, e2m1 and e3m0 frames with fp32 or log8 scales (plugins/compress/fp4/
// fp4.cpp, compiled in): see compress_decoder.hpp. A frame holds two values a byte at most.
// Configurations: each format with fp32 scales per 64 and per 8 values, and with log8 scales per
// 16 (a frame decodes by its own header, whatever the instance's settings). A decoded frame holds
// finite values, none larger than its block's absmax (fp32 scales) or the frame's top (log8).
// With fp32 scales every value a block can represent round-trips exactly: decoded values encoded
// again (the frame's format and block size) give a frame that decodes and re-encodes to the same
// bytes.
#include <cmath>
#include <iterator>

#include "compress_decoder.hpp"

extern "C" pangea_status pangea_plugin_entry_v1(uint32_t, const pangea_library**);

namespace {

struct Setting {
    const char* format;
    uint8_t scheme;  // the header's: 1 e2m1, 2 e3m0
    uint32_t block;
    const char* scale;
};
constexpr Setting kSettings[] = {{"e2m1", 1, 64, "fp32"}, {"e3m0", 2, 64, "fp32"}, {"e2m1", 1, 8, "fp32"},
                                 {"e3m0", 2, 8, "fp32"},  {"e2m1", 1, 16, "log8"}, {"e3m0", 2, 16, "log8"}};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace pangea;
    static fuzz::DecoderHarness harness = [] {
        std::vector<std::map<std::string, SettingValue>> configurations;
        for (const Setting& s : kSettings)
            configurations.push_back({{"format", std::string(s.format)}, {"block_size", int64_t{s.block}},
                                      {"scale", std::string(s.scale)}});
        fuzz::DecoderHarness h(fuzz::compiled_in_plugin(pangea_plugin_entry_v1), configurations);
        h.values_per_byte = 2;  // a nibble each
        h.check_decoded = [](const fuzz::DecoderHarness& self, const std::string& frame, const std::vector<float>& values) {
            // A decoded frame has passed the header checks: version at 4 (1: an f32 absmax per
            // block; 2: log8, an f32 top and a byte per block), scheme at 5, block size at 8.
            const bool log8 = frame.at(4) == 2;
            const uint8_t scheme = static_cast<uint8_t>(frame.at(5));
            uint32_t block = 0;
            std::memcpy(&block, frame.data() + 8, sizeof block);
            for (size_t i = 0; i < values.size(); ++i) {
                FUZZ_CHECK(std::isfinite(values[i]), "a decoded frame holds a NaN or Inf");
                float absmax = 0;
                std::memcpy(&absmax, frame.data() + 24 + (log8 ? 0 : (i / block) * sizeof(float)), sizeof absmax);
                FUZZ_CHECK(std::fabs(values[i]) <= absmax, "value " + std::to_string(i) + " is above its block's absmax");
            }
            if (log8) return;  // log8's encoder may pick another scale for decoded values: no fixed point
            for (size_t config = 0; config < std::size(kSettings); ++config) {
                if (kSettings[config].scheme != scheme || kSettings[config].block != block ||
                    std::string(kSettings[config].scale) != "fp32")
                    continue;
                const auto [status, once] = self.encode(config, values);
                FUZZ_CHECK(status == PANGEA_OK, "a decoded frame does not encode: " + self.instance(config).last_error());
                const auto& vt = self.instance(config).vtable<pangea_compress_vtable>();
                std::vector<float> again(values.size());
                const pangea_status decoded = vt.decode(self.instance(config).handle(), reinterpret_cast<const uint8_t*>(once.data()),
                                                        once.size(), again.data(), again.size());
                FUZZ_CHECK(decoded == PANGEA_OK, "an encoded frame does not decode: " + self.instance(config).last_error());
                const auto [status2, twice] = self.encode(config, again);
                FUZZ_CHECK(status2 == PANGEA_OK, "a decoded frame does not encode: " + self.instance(config).last_error());
                FUZZ_CHECK(twice == once, "representable values do not re-encode to the same bytes");
            }
        };
        return h;
    }();
    return harness.run(data, size);
}
