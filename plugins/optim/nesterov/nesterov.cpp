// optim/nesterov: DiLoCo's outer optimizer, SGD with (Nesterov) momentum on flat fp32 buffers.
// With lr = 1 and momentum = 0 it is plain parameter averaging.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "pangea/sdk.hpp"

namespace {

using pangea::sdk::Error;

// State bytes: magic, format version, parameter count, then one fp32 momentum value per parameter.
constexpr char kStateMagic[4] = {'P', 'N', 'S', 'V'};
constexpr uint32_t kStateFormat = 1;
constexpr size_t kStateHeader = sizeof(kStateMagic) + sizeof(uint32_t) + sizeof(uint64_t);

class Nesterov final : public pangea::sdk::OuterOptimizer {
public:
    static constexpr const char* name = "nesterov";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description =
        "SGD with Nesterov momentum (DiLoCo's outer optimizer); momentum 0 and lr 1 averages";
    static std::vector<pangea_setting> settings() {
        using namespace pangea::sdk;
        return {
            float_setting("lr", "0.7", "outer learning rate", 0.0, 10.0),
            float_setting("momentum", "0.9", "momentum coefficient", 0.0, 0.999999),
            bool_setting("nesterov", "true", "use Nesterov's look-ahead form of momentum"),
        };
    }

    explicit Nesterov(const pangea::sdk::Host& host)
        : lr_(static_cast<float>(host.get_float("lr"))),
          momentum_(static_cast<float>(host.get_float("momentum"))),
          nesterov_(host.get_bool("nesterov")) {}

    void init(size_t n) override { velocity_.assign(n, 0.0f); }

    void step(float* params, const float* grad, size_t n) override {
        if (n != velocity_.size())
            throw Error(PANGEA_ERR_INVALID_ARGUMENT,
                        "step: " + std::to_string(n) + " parameters, but init() was for " +
                            std::to_string(velocity_.size()));
        for (size_t i = 0; i < n; ++i) {
            const float v = momentum_ * velocity_[i] + grad[i];
            velocity_[i] = v;
            params[i] -= lr_ * (nesterov_ ? grad[i] + momentum_ * v : v);
        }
    }

    size_t state_size() override { return range_state_size(velocity_.size()); }

    void save_state(uint8_t* dst, size_t capacity, size_t* written) override {
        save_state_range(0, velocity_.size(), dst, capacity, written);
    }

    void load_state(const uint8_t* src, size_t bytes) override {
        velocity_ = parse(src, bytes, "load_state");
    }

    // The momentum is per parameter: a range's state is its momentum values, with the header.
    size_t range_state_size(size_t count) override { return kStateHeader + count * sizeof(float); }

    void save_state_range(size_t begin, size_t count, uint8_t* dst, size_t capacity, size_t* written) override {
        check_range(begin, count, "save_state_range");
        const size_t size = range_state_size(count);
        if (capacity < size)
            throw Error(PANGEA_ERR_CAPACITY, "save_state: needs " + std::to_string(size) +
                                                 " bytes, capacity is " +
                                                 std::to_string(capacity));
        const uint64_t stored = count;
        std::memcpy(dst, kStateMagic, sizeof(kStateMagic));
        std::memcpy(dst + 4, &kStateFormat, sizeof(kStateFormat));
        std::memcpy(dst + 8, &stored, sizeof(stored));
        if (count > 0) std::memcpy(dst + kStateHeader, velocity_.data() + begin, count * sizeof(float));
        *written = size;
    }

    void load_state_range(size_t begin, size_t count, const uint8_t* src, size_t bytes) override {
        check_range(begin, count, "load_state_range");
        const std::vector<float> loaded = parse(src, bytes, "load_state_range");
        if (loaded.size() != count)
            throw Error(PANGEA_ERR_CORRUPT, "load_state_range: the bytes hold " + std::to_string(loaded.size()) +
                                                " momentum values, the range " + std::to_string(count));
        std::copy(loaded.begin(), loaded.end(), velocity_.begin() + static_cast<std::ptrdiff_t>(begin));
    }

private:
    void check_range(size_t begin, size_t count, const char* what) const {
        if (begin > velocity_.size() || count > velocity_.size() - begin)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, std::string(what) + ": parameters [" + std::to_string(begin) + ", " +
                                                         std::to_string(begin + count) + ") past init()'s " +
                                                         std::to_string(velocity_.size()));
    }

    // The momentum values in state bytes; throws PANGEA_ERR_CORRUPT for bytes this plugin did
    // not write.
    static std::vector<float> parse(const uint8_t* src, size_t bytes, const char* what) {
        if (bytes < kStateHeader || std::memcmp(src, kStateMagic, sizeof(kStateMagic)) != 0)
            throw Error(PANGEA_ERR_CORRUPT, std::string(what) + ": not a nesterov state (bad magic)");
        uint32_t format = 0;
        uint64_t count = 0;
        std::memcpy(&format, src + 4, sizeof(format));
        std::memcpy(&count, src + 8, sizeof(count));
        if (format != kStateFormat)
            throw Error(PANGEA_ERR_CORRUPT,
                        std::string(what) + ": state format " + std::to_string(format) + ", expected " +
                            std::to_string(kStateFormat));
        if (count > (bytes - kStateHeader) / sizeof(float) ||
            bytes != kStateHeader + count * sizeof(float))
            throw Error(PANGEA_ERR_CORRUPT, std::string(what) + ": " + std::to_string(bytes) +
                                                " bytes do not hold " + std::to_string(count) +
                                                " momentum values");
        std::vector<float> values(count);
        if (count > 0) std::memcpy(values.data(), src + kStateHeader, count * sizeof(float));
        return values;
    }

    float lr_;
    float momentum_;
    bool nesterov_;
    std::vector<float> velocity_;
};

}  // namespace

PANGEA_EXPORT_PLUGINS(Nesterov)
