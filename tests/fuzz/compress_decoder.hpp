// The compression plugins' decoders (compress_<plugin>_fuzz.cpp): encoded bytes from the wire
// into decode() and decode_accumulate() through the plugin's C vtable. The plugin's source is
// compiled into the target (its PANGEA_EXPORT_PLUGINS entry point gives the vtable) and served by
// the core's plugin host.
//
// Input: a first byte (bits 0-1: how n, the value count, is chosen: the frame header's count,
// that count off by the next byte, or the next two bytes; bits 2-7: which configuration), then
// the frame.
// Properties (pangea/compress.h): decode and decode_accumulate agree on the status, which is
// PANGEA_OK, PANGEA_ERR_CORRUPT or PANGEA_ERR_INVALID_ARGUMENT; neither writes more values than
// the frame's bytes can hold (values_per_byte each; a sparse codec's frame: its n); a refused
// frame leaves the accumulator
// untouched; a decoded frame adds up to what decode() writes; every configuration (scalar and
// AVX2 kernels, other settings: a frame decodes whatever the instance's settings) decodes a frame
// to the same bits; and a plugin's own checks (finite values, lossless re-encoding) hold.
#pragma once

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>

#include "fuzz_support.hpp"
#include "pangea/compress.h"

namespace pangea::fuzz {

struct DecodeResult {
    pangea_status status = PANGEA_OK;
    std::vector<float> values;
};

class DecoderHarness {
public:
    // `configurations`: settings overrides, one instance each; the first is the reference.
    DecoderHarness(const pangea_plugin_info& plugin, const std::vector<std::map<std::string, SettingValue>>& configurations) {
        for (const auto& settings : configurations) instances_.push_back(std::make_unique<PluginInstance>(instance_of(plugin, settings)));
    }

    // Where the frame header keeps n (the 24-byte header's; compress/topk's 32-byte one: 24).
    size_t count_offset = 16;
    // The most values one byte of a frame can hold (compress/fp4: 2). 0: a sparse codec
    // (compress/topk), whose frame holds any number: decode gets room for all n values when n is
    // at most sparse_room; a larger n only goes to a NULL destination, which must be refused (only
    // the frame's validation runs).
    size_t values_per_byte = 1;
    size_t sparse_room = size_t{1} << 16;

    // A plugin's own check of a decoded frame.
    std::function<void(const DecoderHarness&, const std::string& frame, const std::vector<float>& values)> check_decoded;

    int run(const uint8_t* data, size_t size) {
        Input input(data, size);
        const uint8_t control = input.byte();
        size_t n = 0;
        const uint8_t how = control & 3;
        const int8_t off_by = how == 1 ? static_cast<int8_t>(input.byte()) : 0;
        const uint16_t chosen = how == 2 ? input.integer<uint16_t>() : 0;
        const std::string frame = input.rest();
        if (how == 2) {
            n = chosen;
        } else {
            uint64_t count = frame.size() / sizeof(float);  // no header (compress/none): what the bytes hold
            if (frame.size() >= count_offset + 8 && frame.compare(0, 2, "PG") == 0)
                std::memcpy(&count, frame.data() + count_offset, 8);
            n = static_cast<size_t>(count + static_cast<uint64_t>(static_cast<int64_t>(off_by)));
        }
        const auto& reference = *instances_[0];
        const DecodeResult expected = decode(reference, frame, n);
        for (size_t i = 1; i < instances_.size(); ++i) {
            const DecodeResult other = decode(*instances_[i], frame, n);
            FUZZ_CHECK(other.status == expected.status, "two configurations disagree on whether a frame decodes");
            FUZZ_CHECK(other.values.size() == expected.values.size() && same_bits(other.values, expected.values),
                       "two configurations decode a frame to different values");
        }
        if (expected.status == PANGEA_OK && check_decoded) check_decoded(*this, frame, expected.values);
        return 0;
    }

    const PluginInstance& instance(size_t i) const { return *instances_[i]; }

    // Encodes `values` with configuration i: PANGEA_OK and the bytes, or the failure.
    std::pair<pangea_status, std::string> encode(size_t i, const std::vector<float>& values) const {
        const PluginInstance& plugin = *instances_[i];
        const auto& vt = plugin.vtable<pangea_compress_vtable>();
        std::string bytes(vt.max_encoded_size(plugin.handle(), values.size()), '\0');
        size_t written = 0;
        const pangea_status status = vt.encode(plugin.handle(), values.data(), values.size(),
                                               reinterpret_cast<uint8_t*>(bytes.data()), bytes.size(), &written);
        bytes.resize(status == PANGEA_OK ? written : 0);
        return {status, bytes};
    }

private:
    static bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
        return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    }

    DecodeResult decode(const PluginInstance& plugin, const std::string& frame, size_t n) const {
        const auto& vt = plugin.vtable<pangea_compress_vtable>();
        const auto* src = reinterpret_cast<const uint8_t*>(frame.data());
        DecodeResult out;
        if (values_per_byte == 0 && n > sparse_room) {
            // Too many values to hold: validation only, into NULL, which nothing may accept.
            out.status = vt.decode(plugin.handle(), src, frame.size(), nullptr, n);
            const pangea_status accumulated = vt.decode_accumulate(plugin.handle(), src, frame.size(), nullptr, n);
            FUZZ_CHECK(out.status == PANGEA_ERR_CORRUPT || out.status == PANGEA_ERR_INVALID_ARGUMENT,
                       std::string("decode into NULL returned ") + status_name(out.status) + ": " + plugin.last_error());
            FUZZ_CHECK(accumulated == out.status, std::string("decode into NULL returned ") + status_name(out.status) +
                                                      " but decode_accumulate " + status_name(accumulated));
            return out;
        }
        // Room for as many values as the bytes could ever hold (a sparse codec: n): a decoder that
        // writes more has accepted a frame too short for n.
        const size_t room = values_per_byte == 0 ? n : std::min(n, values_per_byte * frame.size());
        out.values.assign(room, 0.0f);
        out.status = vt.decode(plugin.handle(), src, frame.size(), out.values.data(), n);
        std::vector<float> acc(room);
        for (size_t i = 0; i < room; ++i) acc[i] = static_cast<float>(i % 7) - 3.5f;  // a canary
        const std::vector<float> before = acc;
        const pangea_status accumulated = vt.decode_accumulate(plugin.handle(), src, frame.size(), acc.data(), n);
        FUZZ_CHECK(out.status == PANGEA_OK || out.status == PANGEA_ERR_CORRUPT || out.status == PANGEA_ERR_INVALID_ARGUMENT,
                   std::string("decode returned ") + status_name(out.status) + ": " + plugin.last_error());
        FUZZ_CHECK(accumulated == out.status, std::string("decode returned ") + status_name(out.status) +
                                                  " but decode_accumulate " + status_name(accumulated));
        if (out.status != PANGEA_OK) {
            FUZZ_CHECK(same_bits(acc, before), "decode_accumulate refused a frame but changed the accumulator");
            out.values.clear();
            return out;
        }
        FUZZ_CHECK(room == n, "a frame decoded into more values than its bytes");
        for (size_t i = 0; i < n; ++i) {
            const float sum = before[i] + out.values[i];
            FUZZ_CHECK(std::memcmp(&sum, &acc[i], sizeof sum) == 0 || (std::isnan(sum) && std::isnan(acc[i])),
                       "decode_accumulate added something else than decode wrote, at value " + std::to_string(i));
        }
        return out;
    }

    std::vector<std::unique_ptr<PluginInstance>> instances_;
};

}  // namespace pangea::fuzz
