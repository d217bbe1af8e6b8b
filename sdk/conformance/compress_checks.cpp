// Checks for compression plugins (pangea/compress.h).
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "conformance.hpp"
#include "pangea/compress.h"

namespace pangea::conformance {
namespace {


struct Compressor {
    PluginInstance instance;
    const pangea_compress_vtable& vt;

    explicit Compressor(const Subject& subject)
        : instance(subject.make()), vt(instance.vtable<pangea_compress_vtable>()) {}

    std::vector<uint8_t> encode(const std::vector<float>& values) {
        std::vector<uint8_t> out(vt.max_encoded_size(instance.handle(), values.size()));
        size_t written = 0;
        const pangea_status status =
            vt.encode(instance.handle(), values.data(), values.size(), out.data(), out.size(), &written);
        expect(status == PANGEA_OK, instance.describe_failure("encode", status));
        expect(written <= out.size(), "encode wrote " + std::to_string(written) +
                                          " bytes, more than max_encoded_size " +
                                          std::to_string(out.size()));
        out.resize(written);
        return out;
    }
};

constexpr uint8_t kCanary = 0xA5;

}  // namespace

void check_compress(Report& report, const Subject& subject) {
    const std::vector<size_t> sizes = {1, 7, 1000, 65537};

    report.run(subject.check_name("round trip stays within the declared error_bound"), [&] {
        Compressor c(subject);
        const double bound = c.vt.error_bound(c.instance.handle());
        expect(std::isfinite(bound) && bound >= 0, "error_bound() is " + std::to_string(bound) +
                                                       ", not a finite number >= 0");
        for (size_t n : sizes) {
            const auto input = random_normal(n, 7);
            const auto bytes = c.encode(input);
            std::vector<float> output(n, std::numeric_limits<float>::quiet_NaN());
            const pangea_status status =
                c.vt.decode(c.instance.handle(), bytes.data(), bytes.size(), output.data(), n);
            expect(status == PANGEA_OK, c.instance.describe_failure("decode", status));
            double error = 0, norm = 0;
            for (size_t i = 0; i < n; ++i) {
                expect(std::isfinite(output[i]), "decode produced a non-finite value");
                error += (output[i] - input[i]) * double(output[i] - input[i]);
                norm += input[i] * double(input[i]);
            }
            const double relative = std::sqrt(error / norm);
            expect(relative <= bound, "relative L2 error " + std::to_string(relative) + " for n=" +
                                          std::to_string(n) + ", above the declared error_bound " +
                                          std::to_string(bound));
        }
    });

    report.run(subject.check_name("encode is deterministic across calls and instances"), [&] {
        Compressor a(subject), b(subject);
        const auto input = random_normal(65537, 11);
        const auto first = a.encode(input);
        expect(a.encode(input) == first, "the same instance gave different bytes");
        expect(b.encode(input) == first, "another instance gave different bytes");
    });

    report.run(subject.check_name("decode_accumulate adds what decode gives"), [&] {
        Compressor c(subject);
        const size_t n = 4099;
        const auto input = random_normal(n, 3);
        const auto bytes = c.encode(input);
        std::vector<float> decoded(n);
        const pangea_status decoded_status =
            c.vt.decode(c.instance.handle(), bytes.data(), bytes.size(), decoded.data(), n);
        expect(decoded_status == PANGEA_OK, c.instance.describe_failure("decode", decoded_status));
        std::vector<float> acc = random_normal(n, 5);
        const std::vector<float> before = acc;
        const pangea_status status =
            c.vt.decode_accumulate(c.instance.handle(), bytes.data(), bytes.size(), acc.data(), n);
        expect(status == PANGEA_OK, c.instance.describe_failure("decode_accumulate", status));
        for (size_t i = 0; i < n; ++i)
            expect(acc[i] == before[i] + decoded[i],
                   "acc[" + std::to_string(i) + "] is not acc + decode");
    });

    report.run(subject.check_name("too small an output buffer is PANGEA_ERR_CAPACITY"), [&] {
        Compressor c(subject);
        const auto input = random_normal(1000, 13);
        const size_t needed = c.encode(input).size();
        std::vector<uint8_t> dst(needed, kCanary);
        size_t written = 12345;
        const size_t capacity = needed - 1;
        const pangea_status status =
            c.vt.encode(c.instance.handle(), input.data(), input.size(), dst.data(), capacity, &written);
        expect(status == PANGEA_ERR_CAPACITY,
               std::string("encode into one byte too few returned ") + status_name(status));
        expect(dst[capacity] == kCanary, "encode wrote past dst_capacity");
        expect(written == 12345, "encode changed *written on failure");
        expect(!c.instance.last_error().empty(), "no last_error() text after a failure");
    });

    report.run(subject.check_name("truncated, overlong and mismatched input is PANGEA_ERR_CORRUPT"), [&] {
        Compressor c(subject);
        const size_t n = 1000;
        const auto bytes = c.encode(random_normal(n, 17));
        std::vector<float> acc(n, 1.0f);
        auto expect_corrupt = [&](const uint8_t* src, size_t size, size_t count, const char* what) {
            std::vector<float> out(count + 1);
            pangea_status status = c.vt.decode(c.instance.handle(), src, size, out.data(), count);
            expect(status == PANGEA_ERR_CORRUPT,
                   std::string("decode of ") + what + " returned " + status_name(status));
            status = c.vt.decode_accumulate(c.instance.handle(), src, size, acc.data(), std::min(count, n));
            if (count <= n)
                expect(status == PANGEA_ERR_CORRUPT, std::string("decode_accumulate of ") + what +
                                                         " returned " + status_name(status));
            expect(!c.instance.last_error().empty(), "no last_error() text after a failure");
        };
        expect_corrupt(bytes.data(), bytes.size() - 1, n, "a buffer one byte short");
        expect_corrupt(bytes.data(), bytes.size() / 2, n, "half a buffer");
        expect_corrupt(bytes.data(), 0, n, "an empty buffer");
        std::vector<uint8_t> longer = bytes;
        longer.push_back(0);
        expect_corrupt(longer.data(), longer.size(), n, "a buffer one byte long");
        expect_corrupt(bytes.data(), bytes.size(), n - 1, "n one less than encoded");
        for (float v : acc) expect(v == 1.0f, "a failed decode_accumulate changed the accumulator");
    });

    report.run(subject.check_name("NaN and Inf input gives PANGEA_OK or PANGEA_ERR_INVALID_DATA"), [&] {
        Compressor c(subject);
        for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
            auto input = random_normal(300, 19);
            input[150] = bad;
            std::vector<uint8_t> dst(c.vt.max_encoded_size(c.instance.handle(), input.size()));
            size_t written = 0;
            const pangea_status status = c.vt.encode(c.instance.handle(), input.data(), input.size(),
                                                     dst.data(), dst.size(), &written);
            expect(status == PANGEA_OK || status == PANGEA_ERR_INVALID_DATA,
                   c.instance.describe_failure("encode of a NaN or Inf", status));
            if (status == PANGEA_ERR_INVALID_DATA) {
                expect(!c.instance.last_error().empty(), "no last_error() text after refusing");
                continue;
            }
            // What encode accepted must decode: the ring decodes whatever a peer sends.
            std::vector<float> output(input.size());
            const pangea_status decoded =
                c.vt.decode(c.instance.handle(), dst.data(), written, output.data(), output.size());
            expect(decoded == PANGEA_OK, c.instance.describe_failure(
                                             std::string("decode of what encode accepted with ") +
                                                 (std::isnan(bad) ? "a NaN" : "an Inf"),
                                             decoded));
        }
    });

    Compressor probe(subject);
    if (probe.vt.capabilities(probe.instance.handle()) & PANGEA_COMPRESS_CAP_IDENTITY)
        report.run(subject.check_name("PANGEA_COMPRESS_CAP_IDENTITY: encode writes the floats' own bytes"), [&] {
            Compressor c(subject);
            const auto input = random_normal(1001, 23);
            const auto bytes = c.encode(input);
            expect(bytes.size() == input.size() * sizeof(float) &&
                       std::memcmp(bytes.data(), input.data(), bytes.size()) == 0,
                   "the host skips an identity codec and sends the buffer as it is: encode must write exactly that");
        });
}

}  // namespace pangea::conformance
