// compress/topk's decoder, 2- and 8-bit frames (plugins/compress/topk/topk.cpp, compiled in): see
// compress_decoder.hpp. A sparse codec: its 32-byte header keeps n at offset 24, and a frame holds
// more values than bytes (room for up to 2^16 values; a frame of more is only validated).
// Configurations: the defaults (2 bits, chunks of 4096) and 8 bits with chunks of 16 (a frame
// decodes by its own header, whatever the instance's settings). A decoded frame holds finite
// values; in each chunk at most its k are non-zero, none larger than the chunk's largest
// parameter (2 bits: hi; 8 bits: the scale A).
#include <cmath>

#include "compress_decoder.hpp"

extern "C" pangea_status pangea_plugin_entry_v1(uint32_t, const pangea_library**);

namespace {

template <typename T>
T read(const std::string& frame, size_t at) {
    T value;
    std::memcpy(&value, frame.data() + at, sizeof value);
    return value;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace pangea;
    static fuzz::DecoderHarness harness = [] {
        fuzz::DecoderHarness h(fuzz::compiled_in_plugin(pangea_plugin_entry_v1),
                               {{},
                                {{"value_bits", int64_t{8}}, {"chunk", int64_t{16}}, {"density", 0.25}}});
        h.count_offset = 24;
        h.values_per_byte = 0;  // sparse: up to h.sparse_room = 2^16 values decoded
        h.check_decoded = [](const fuzz::DecoderHarness&, const std::string& frame, const std::vector<float>& values) {
            // A decoded frame has passed the header checks: value bits at 5, chunk at 8, k of a
            // full chunk at 12 and of the last at 16; each chunk's parameters, then its bits.
            const unsigned value_bits = static_cast<uint8_t>(frame.at(5));
            const size_t chunk = read<uint32_t>(frame, 8), kept = read<uint32_t>(frame, 12),
                         kept_last = read<uint32_t>(frame, 16);
            unsigned index_bits = 0;
            while ((size_t{1} << index_bits) < chunk) ++index_bits;
            const size_t params = value_bits == 2 ? 2 : 1;
            const size_t chunk_bytes = params * sizeof(float) + (kept * (index_bits + value_bits) + 7) / 8;
            const size_t chunks = (values.size() + chunk - 1) / chunk;
            for (size_t c = 0; c < chunks; ++c) {
                const size_t at = 32 + c * chunk_bytes;
                const float largest = read<float>(frame, at + (params - 1) * sizeof(float));
                const size_t k = c + 1 == chunks ? kept_last : kept;
                size_t nonzero = 0;
                for (size_t i = c * chunk; i < std::min(values.size(), (c + 1) * chunk); ++i) {
                    FUZZ_CHECK(std::isfinite(values[i]), "a decoded frame holds a NaN or Inf");
                    FUZZ_CHECK(std::fabs(values[i]) <= largest, "value " + std::to_string(i) + " is above its chunk's scale");
                    nonzero += values[i] != 0.0f;
                }
                FUZZ_CHECK(nonzero <= k, "chunk " + std::to_string(c) + " decodes to more non-zero values than it keeps");
            }
        };
        return h;
    }();
    return harness.run(data, size);
}
