// Checks for compression plugins (pangea/compress.h).
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#include "conformance.hpp"
#include "pangea/compress.h"
#include "plugin_host/shared_library.hpp"

namespace pangea::conformance {
namespace {

// `size` bytes that end right where an inaccessible page begins: a plugin that reads past what
// it was handed crashes there (and the report names the check) instead of reading on unseen.
class GuardedBytes {
public:
    explicit GuardedBytes(size_t size) : size_(size) {
        const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
        mapped_ = (size + page - 1) / page * page + page;
        void* base = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) throw std::bad_alloc();
        base_ = static_cast<uint8_t*>(base);
        mprotect(base_ + mapped_ - page, page, PROT_NONE);
        data_ = base_ + mapped_ - page - size;
    }
    GuardedBytes(const void* bytes, size_t size) : GuardedBytes(size) {
        if (size > 0) std::memcpy(data_, bytes, size);
    }
    ~GuardedBytes() { munmap(base_, mapped_); }
    GuardedBytes(const GuardedBytes&) = delete;
    GuardedBytes& operator=(const GuardedBytes&) = delete;

    uint8_t* data() const { return data_; }
    size_t size() const { return size_; }

private:
    size_t size_, mapped_ = 0;
    uint8_t* base_ = nullptr;
    uint8_t* data_ = nullptr;
};

std::vector<float> scaled(std::vector<float> values, float factor) {
    for (float& v : values) v *= factor;
    return values;
}

double norm(const std::vector<double>& values) {
    double sum = 0;
    for (double v : values) sum += v * v;
    return std::sqrt(sum);
}

std::string float_text(float value) {
    char text[64];
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    std::snprintf(text, sizeof text, "%.9g (0x%08x)", static_cast<double>(value), bits);
    return text;
}

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

    // decode() of exactly these bytes, handed over as a message is received: nothing past them.
    std::vector<float> decode(const std::vector<uint8_t>& bytes, size_t n) {
        const GuardedBytes message(bytes.data(), bytes.size());
        std::vector<float> out(n);
        const pangea_status status = vt.decode(instance.handle(), message.data(), message.size(), out.data(), n);
        expect(status == PANGEA_OK, instance.describe_failure("decode", status));
        return out;
    }

    // decode_accumulate() of exactly these bytes into acc.
    void accumulate(const std::vector<uint8_t>& bytes, std::vector<float>& acc) {
        const GuardedBytes message(bytes.data(), bytes.size());
        const pangea_status status =
            vt.decode_accumulate(instance.handle(), message.data(), message.size(), acc.data(), acc.size());
        expect(status == PANGEA_OK, instance.describe_failure("decode_accumulate", status));
    }
};

constexpr uint8_t kCanary = 0xA5;
constexpr uint32_t kCanaryFloatBits = 0x7fc0dead;  // a NaN no codec writes by chance

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

float canary_float() {
    float out;
    std::memcpy(&out, &kCanaryFloatBits, sizeof out);
    return out;
}

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

    report.run(subject.check_name("encode writes at most max_encoded_size and decodes from exactly what it wrote"), [&] {
        Compressor c(subject);
        constexpr size_t kSlack = 16;  // canaries after dst_capacity and after n values
        for (size_t n : {size_t{0}, size_t{1}, size_t{3}, size_t{255}, size_t{257}, size_t{4097}}) {
            const std::string at = " (n=" + std::to_string(n) + ")";
            const auto input = random_normal(n, 29 + static_cast<uint32_t>(n));
            const GuardedBytes src(input.data(), n * sizeof(float));  // nothing readable past n values
            const size_t capacity = c.vt.max_encoded_size(c.instance.handle(), n);
            std::vector<uint8_t> dst(capacity + kSlack, kCanary);
            size_t written = std::numeric_limits<size_t>::max();
            pangea_status status = c.vt.encode(c.instance.handle(), reinterpret_cast<const float*>(src.data()), n,
                                               dst.data(), capacity, &written);
            expect(status == PANGEA_OK,
                   c.instance.describe_failure("encode into max_encoded_size bytes" + at, status));
            expect(written <= capacity, "encode" + at + " says it wrote " + std::to_string(written) +
                                            " bytes, more than max_encoded_size " + std::to_string(capacity));
            for (size_t i = capacity; i < dst.size(); ++i)
                expect(dst[i] == kCanary, "encode" + at + " wrote past dst_capacity (byte " + std::to_string(i) + ")");

            // The message travels as the `written` bytes alone: decode must need nothing past them.
            const GuardedBytes message(dst.data(), written);
            std::vector<float> out(n + kSlack, canary_float());
            status = c.vt.decode(c.instance.handle(), message.data(), written, out.data(), n);
            expect(status == PANGEA_OK, c.instance.describe_failure(
                                            "decode of the " + std::to_string(written) + " bytes encode wrote" + at, status));
            for (size_t i = 0; i < n; ++i)
                expect(std::isfinite(out[i]), "decode" + at + " gave a non-finite value at [" + std::to_string(i) + "]");
            for (size_t i = n; i < out.size(); ++i)
                expect(same_bits(out[i], canary_float()), "decode" + at + " wrote past the n values");

            std::vector<float> acc(n + kSlack, canary_float());
            std::fill(acc.begin(), acc.begin() + static_cast<std::ptrdiff_t>(n), 0.0f);
            status = c.vt.decode_accumulate(c.instance.handle(), message.data(), written, acc.data(), n);
            expect(status == PANGEA_OK, c.instance.describe_failure(
                                            "decode_accumulate of the " + std::to_string(written) + " bytes encode wrote" + at,
                                            status));
            for (size_t i = 0; i < n; ++i)
                expect(acc[i] == out[i], "decode_accumulate" + at + " into zeros gave " + float_text(acc[i]) + " at [" +
                                             std::to_string(i) + "], decode gave " + float_text(out[i]));
            for (size_t i = n; i < acc.size(); ++i)
                expect(same_bits(acc[i], canary_float()), "decode_accumulate" + at + " wrote past the n values");
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
    const uint64_t capabilities = probe.vt.capabilities(probe.instance.handle());
    if (capabilities & PANGEA_COMPRESS_CAP_GATHER) {
        report.run(subject.check_name("gathered messages sum the same bits on every node"), [&] {
            for (size_t n : {size_t{1}, size_t{4099}}) {
                const std::string at = " (n=" + std::to_string(n) + ")";
                // Four nodes' contributions, of different magnitudes and sparsity (their messages
                // may differ in size), each encoded once by the node's own instance.
                auto sparse = scaled(random_normal(n, 103), 1e3f);
                for (size_t i = 0; i < n; ++i)
                    if (i % 16 != 5) sparse[i] = 0.0f;
                const std::vector<std::vector<float>> inputs = {
                    scaled(random_normal(n, 101), 1e-3f), random_normal(n, 102), sparse, std::vector<float>(n, 0.0f)};
                std::vector<std::vector<uint8_t>> messages;
                for (const auto& input : inputs) messages.push_back(Compressor(subject).encode(input));

                // Two nodes add them all up, node 0's first. The second instance has decoded
                // other messages before (another length, other values): history must not matter.
                Compressor one(subject), two(subject);
                {
                    std::vector<float> other(n + 5, 1.0f);
                    two.accumulate(two.encode(scaled(random_normal(n + 5, 104), 7.0f)), other);
                    two.decode(two.encode(random_normal(n, 105)), n);
                }
                std::vector<float> sum_one(n, 0.0f), sum_two(n, 0.0f);
                for (const auto& message : messages) {
                    one.accumulate(message, sum_one);
                    two.accumulate(message, sum_two);
                }
                for (size_t i = 0; i < n; ++i)
                    expect(same_bits(sum_one[i], sum_two[i]),
                           "two instances summed the " + std::to_string(messages.size()) + " messages" + at +
                               " to different bits at [" + std::to_string(i) + "]: " + float_text(sum_one[i]) + " and " +
                               float_text(sum_two[i]) + " (decoding must depend on the message alone)");

                // ... and what they get is decode() of each message added in fp32, in order.
                Compressor three(subject);
                std::vector<float> reference(n, 0.0f);
                for (const auto& message : messages) {
                    const auto decoded = three.decode(message, n);
                    for (size_t i = 0; i < n; ++i) reference[i] = reference[i] + decoded[i];
                }
                for (size_t i = 0; i < n; ++i)
                    expect(std::isfinite(sum_one[i]) && sum_one[i] == reference[i],
                           "decode_accumulate of the messages in node order gives " + float_text(sum_one[i]) + " at [" +
                               std::to_string(i) + "]" + at + ", decode of each added in fp32 in the same order gives " +
                               float_text(reference[i]));
            }
        });

        report.run(subject.check_name("a gather codec's library refuses hosts older than ABI 1.4"), [&] {
            const SharedLibrary library(subject.plugin->library_path);
            const auto entry = library.function<pangea_plugin_entry_fn>(PANGEA_PLUGIN_ENTRY_SYMBOL);
            expect(entry != nullptr, "no entry point");
            const uint32_t major = static_cast<uint32_t>(PANGEA_ABI_MAJOR) << 16;
            for (uint32_t minor = 4; minor-- > 0;) {  // 1.3 first: the one a host is likeliest to offer
                const pangea_library* answer = nullptr;
                const pangea_status status = entry(major | minor, &answer);
                expect(status == PANGEA_ERR_VERSION,
                       "offered ABI 1." + std::to_string(minor) + ", the library answered " + status_name(status) +
                           ", not PANGEA_ERR_VERSION: a host older than 1.4 does not know PANGEA_COMPRESS_CAP_GATHER "
                           "and would sum this codec's messages along a ring (with sdk.hpp, give the class "
                           "`static constexpr uint32_t min_host_abi_minor = 4;`)");
            }
            const pangea_library* answer = nullptr;
            const pangea_status status = entry(major | 4u, &answer);
            expect(status == PANGEA_OK && answer != nullptr,
                   std::string("offered ABI 1.4, the library answered ") + status_name(status) +
                       (status == PANGEA_OK ? " without a descriptor" : ""));
            expect(answer->abi_version == (major | 4u),
                   "offered ABI 1.4, the library answered that it speaks " +
                       std::to_string(PANGEA_ABI_VERSION_MAJOR(answer->abi_version)) + "." +
                       std::to_string(PANGEA_ABI_VERSION_MINOR(answer->abi_version)) +
                       " (a gather codec speaks 1.4, and never more than the offer)");
        });
    }

    if (capabilities & PANGEA_COMPRESS_CAP_ERROR_FEEDBACK)
        report.run(subject.check_name("error feedback keeps the running sum close"), [&] {
            // The host's loop for one node and one piece: each round sends c = g + r and keeps
            // r = c - decode(encode(c)), so the decoded values of all rounds sum to sum(g) - r.
            // That stays close only while every round's error is below its input: a decode that
            // overshoots makes r grow round after round, and a value the codec never delivers
            // stays in r for good, whatever feedback adds to it.
            Compressor fed(subject), plain(subject);
            const double bound = fed.vt.error_bound(fed.instance.handle());
            constexpr size_t n = 4099;

            // Each position alone, holding a value of ordinary size (0.5 to 5) among zeros, must
            // come back closer than 0 is.
            std::vector<float> alone(n, 0.0f);
            const auto sizes = random_normal(n, 4999);
            for (size_t i = 0; i < n; ++i) {
                const float value = std::copysign(0.5f + std::fabs(sizes[i]), sizes[i]);
                alone[i] = value;
                const auto decoded = fed.decode(fed.encode(alone), n);
                double error = 0;
                for (size_t j = 0; j < n; ++j) error += (double(decoded[j]) - alone[j]) * (double(decoded[j]) - alone[j]);
                expect(error < double(value) * value,
                       "x holding only " + float_text(value) + " at [" + std::to_string(i) + "] of " + std::to_string(n) +
                           " decodes to " + float_text(decoded[i]) + " there, and |decode(encode(x)) - x| = " +
                           std::to_string(std::sqrt(error)) + " is not below |x|: error feedback cannot shrink "
                           "such a residual (a value never delivered stays in it for good; an overshoot grows it)");
                alone[i] = 0.0f;
            }

            constexpr int kRounds = 64;
            std::vector<float> residual(n, 0.0f), input(n);
            std::vector<double> sum_g(n, 0.0), miss_fed(n, 0.0), miss_plain(n, 0.0);
            for (int round = 0; round < kRounds; ++round) {
                const std::string at = "round " + std::to_string(round) + " of " + std::to_string(kRounds) + ": ";
                const auto g = random_normal(n, 5000 + static_cast<uint32_t>(round));
                for (size_t i = 0; i < n; ++i) input[i] = g[i] + residual[i];
                const auto decoded = fed.decode(fed.encode(input), n);
                double error = 0, size = 0;
                for (size_t i = 0; i < n; ++i) {
                    expect(std::isfinite(decoded[i]), at + "decode gave a non-finite value");
                    residual[i] = input[i] - decoded[i];
                    error += double(residual[i]) * residual[i];
                    size += double(input[i]) * input[i];
                }
                error = std::sqrt(error);
                size = std::sqrt(size);
                expect(error <= bound * size, at + "|residual| = " + std::to_string(error) + " is above error_bound() " +
                                                  std::to_string(bound) + " times |pseudo-gradient + residual| = " +
                                                  std::to_string(size));
                expect(error < size, at + "|residual| = " + std::to_string(error) +
                                         " is not below |pseudo-gradient + residual| = " + std::to_string(size) +
                                         ": the residual grows from round to round (a decode that overshoots)");
                const auto without = plain.decode(plain.encode(g), n);
                for (size_t i = 0; i < n; ++i) {
                    sum_g[i] += g[i];
                    miss_fed[i] += double(g[i]) - decoded[i];
                    miss_plain[i] += double(g[i]) - without[i];
                }
            }
            // Without feedback, independent rounds' errors add up like the pseudo-gradients do:
            // the sum keeps about one round's relative error. With it, the sum misses only the
            // last residual: about 1/8 of that for int8, fp16 and 1-bit signs, up to 0.96 of it for
            // a top-k that keeps 1 value in 4096 (its residual takes more than 64 rounds to settle).
            const double with_feedback = norm(miss_fed) / norm(sum_g);
            const double without_feedback = norm(miss_plain) / norm(sum_g);
            expect(with_feedback <= without_feedback + 1e-6,
                   "after " + std::to_string(kRounds) + " rounds, |sum of pseudo-gradients - sum of decoded| is " +
                       std::to_string(with_feedback) + " of |sum of pseudo-gradients| with error feedback, " +
                       std::to_string(without_feedback) + " without: feedback made the sum worse");
        });

    if (capabilities & PANGEA_COMPRESS_CAP_IDENTITY)
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
