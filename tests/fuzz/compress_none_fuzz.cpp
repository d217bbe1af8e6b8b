// compress/none's decoder (plugins/compress/none/none.cpp, compiled in): see compress_decoder.hpp.
// The frame is the fp32 values themselves, so a decoded frame re-encodes to the same bytes.
#include "compress_decoder.hpp"

extern "C" pangea_status pangea_plugin_entry_v1(uint32_t, const pangea_library**);

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace pangea;
    static fuzz::DecoderHarness harness = [] {
        fuzz::DecoderHarness h(fuzz::compiled_in_plugin(pangea_plugin_entry_v1), {{}});
        h.check_decoded = [](const fuzz::DecoderHarness& self, const std::string& frame, const std::vector<float>& values) {
            const auto [status, again] = self.encode(0, values);
            FUZZ_CHECK(status == PANGEA_OK, "a decoded frame does not encode: " + self.instance(0).last_error());
            FUZZ_CHECK(again == frame, "a decoded frame re-encodes to other bytes");
        };
        return h;
    }();
    return harness.run(data, size);
}
