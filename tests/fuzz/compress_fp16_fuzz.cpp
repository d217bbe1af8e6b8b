// compress/fp16's decoder, fp16 and bf16 frames (plugins/compress/fp16/fp16.cpp, compiled in):
// see compress_decoder.hpp. Configurations: each format with the scalar and the automatic
// (AVX2/F16C where the CPU has them) kernels. The formats are lossless for what they decode:
// a decoded frame is finite and re-encodes, in its own format, to the same bytes.
#include <cmath>

#include "compress_decoder.hpp"

extern "C" pangea_status pangea_plugin_entry_v1(uint32_t, const pangea_library**);

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace pangea;
    static fuzz::DecoderHarness harness = [] {
        fuzz::DecoderHarness h(fuzz::compiled_in_plugin(pangea_plugin_entry_v1),
                               {{{"format", std::string("fp16")}, {"kernel", std::string("scalar")}},
                                {{"format", std::string("fp16")}, {"kernel", std::string("auto")}},
                                {{"format", std::string("bf16")}, {"kernel", std::string("scalar")}},
                                {{"format", std::string("bf16")}, {"kernel", std::string("auto")}}});
        h.check_decoded = [](const fuzz::DecoderHarness& self, const std::string& frame, const std::vector<float>& values) {
            for (float v : values) FUZZ_CHECK(std::isfinite(v), "a decoded frame holds a NaN or Inf");
            const size_t format = frame.at(5) == 2 ? 2 : 0;  // the header's scheme byte: 1 fp16, 2 bf16
            for (size_t config : {format, format + 1}) {
                const auto [status, again] = self.encode(config, values);
                FUZZ_CHECK(status == PANGEA_OK, "a decoded frame does not encode: " + self.instance(config).last_error());
                FUZZ_CHECK(again == frame, "a decoded frame re-encodes to other bytes");
            }
        };
        return h;
    }();
    return harness.run(data, size);
}
