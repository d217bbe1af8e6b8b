// compress/int8's decoder, minmax and sigma frames (plugins/compress/int8/int8.cpp, compiled in):
// see compress_decoder.hpp. Configurations: the scalar and the automatic (AVX2 where the CPU has
// it) kernels. A decoded frame holds finite values only.
#include <cmath>

#include "compress_decoder.hpp"

extern "C" pangea_status pangea_plugin_entry_v1(uint32_t, const pangea_library**);

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace pangea;
    static fuzz::DecoderHarness harness = [] {
        fuzz::DecoderHarness h(fuzz::compiled_in_plugin(pangea_plugin_entry_v1),
                               {{{"kernel", std::string("scalar")}}, {{"kernel", std::string("auto")}}});
        h.check_decoded = [](const fuzz::DecoderHarness&, const std::string&, const std::vector<float>& values) {
            for (float v : values) FUZZ_CHECK(std::isfinite(v), "a decoded frame holds a NaN or Inf");
        };
        return h;
    }();
    return harness.run(data, size);
}
