// Checks for outer optimizer plugins (pangea/optim.h).
#include <vector>

#include "conformance.hpp"
#include "pangea/optim.h"

namespace pangea::conformance {
namespace {

struct Optimizer {
    PluginInstance instance;
    const pangea_optim_vtable& vt;

    Optimizer(const Subject& subject, size_t n)
        : instance(subject.make()), vt(instance.vtable<pangea_optim_vtable>()) {
        const pangea_status status = vt.init(instance.handle(), n);
        expect(status == PANGEA_OK, instance.describe_failure("init", status));
    }
    void step(std::vector<float>& params, const std::vector<float>& grad) {
        const pangea_status status =
            vt.step(instance.handle(), params.data(), grad.data(), params.size());
        expect(status == PANGEA_OK, instance.describe_failure("step", status));
    }
    std::vector<uint8_t> save() {
        std::vector<uint8_t> out(vt.state_size(instance.handle()));
        size_t written = 0;
        const pangea_status status = vt.save_state(instance.handle(), out.data(), out.size(), &written);
        expect(status == PANGEA_OK, instance.describe_failure("save_state", status));
        expect(written == out.size(), "save_state wrote " + std::to_string(written) +
                                          " bytes, state_size said " + std::to_string(out.size()));
        return out;
    }
    std::vector<uint8_t> save_range(size_t begin, size_t count) {
        std::vector<uint8_t> out(vt.range_state_size(instance.handle(), count));
        size_t written = 0;
        const pangea_status status =
            vt.save_state_range(instance.handle(), begin, count, out.data(), out.size(), &written);
        expect(status == PANGEA_OK, instance.describe_failure("save_state_range", status));
        expect(written == out.size(), "save_state_range wrote " + std::to_string(written) +
                                          " bytes, range_state_size said " + std::to_string(out.size()));
        return out;
    }
    void load_range(size_t begin, size_t count, const std::vector<uint8_t>& bytes) {
        const pangea_status status = vt.load_state_range(instance.handle(), begin, count, bytes.data(), bytes.size());
        expect(status == PANGEA_OK, instance.describe_failure("load_state_range", status));
    }
};

std::vector<float> part(const std::vector<float>& all, size_t begin, size_t count) {
    return {all.begin() + static_cast<std::ptrdiff_t>(begin), all.begin() + static_cast<std::ptrdiff_t>(begin + count)};
}

// The state of a range (ABI 1.3, optional): an optimizer that splits its state must step a
// range as a whole instance steps it, and move a range's state between the two exactly.
void check_ranges(Report& report, const Subject& subject, size_t n) {
    const size_t begin = 400, count = 300;  // inside n, neither end
    {
        Optimizer probe(subject, n);
        if (probe.vt.range_state_size(probe.instance.handle(), count) == 0) {
            report.run(subject.check_name("an optimizer that cannot split its state says so"), [&] {
                Optimizer opt(subject, n);
                std::vector<uint8_t> out(64);
                size_t written = 0;
                const pangea_status status =
                    opt.vt.save_state_range(opt.instance.handle(), begin, count, out.data(), out.size(), &written);
                expect(status == PANGEA_ERR_UNSUPPORTED,
                       std::string("range_state_size is 0, and save_state_range returned ") + status_name(status));
            });
            return;
        }
    }

    report.run(subject.check_name("an instance of a range steps it as an instance of all does"), [&] {
        Optimizer whole(subject, n), range(subject, count);
        auto params = random_normal(n, 5);
        auto range_params = part(params, begin, count);
        for (uint32_t i = 0; i < 3; ++i) {
            const auto grad = random_normal(n, 20 + i);
            whole.step(params, grad);
            range.step(range_params, part(grad, begin, count));
        }
        expect(part(params, begin, count) == range_params, "the range's parameters differ from the whole's");
        expect(whole.save_range(begin, count) == range.save(),
               "save_state_range of the whole differs from save_state of an instance of the range");
    });

    report.run(subject.check_name("ranges loaded into a fresh instance rebuild the whole state"), [&] {
        Optimizer whole(subject, n);
        auto params = random_normal(n, 6);
        for (uint32_t i = 0; i < 2; ++i) whole.step(params, random_normal(n, 30 + i));
        Optimizer rebuilt(subject, n);
        rebuilt.load_range(0, begin, whole.save_range(0, begin));
        rebuilt.load_range(begin, n - begin, whole.save_range(begin, n - begin));
        expect(rebuilt.save() == whole.save(), "the state rebuilt from two ranges differs from the whole's");
        // And an instance of a range takes a range's bytes with load_state().
        Optimizer range(subject, count);
        const auto bytes = whole.save_range(begin, count);
        const pangea_status status = range.vt.load_state(range.instance.handle(), bytes.data(), bytes.size());
        expect(status == PANGEA_OK, range.instance.describe_failure("load_state of a range's bytes", status));
        expect(range.save() == bytes, "an instance of the range saves other bytes than it loaded");
    });

    report.run(subject.check_name("bad ranges and range bytes are refused and keep the state"), [&] {
        Optimizer opt(subject, n);
        auto params = random_normal(n, 7);
        opt.step(params, random_normal(n, 8));
        const auto state = opt.save();
        std::vector<uint8_t> out(opt.vt.range_state_size(opt.instance.handle(), count));
        size_t written = 0;
        pangea_status status = opt.vt.save_state_range(opt.instance.handle(), n - 10, count, out.data(), out.size(), &written);
        expect(status == PANGEA_ERR_INVALID_ARGUMENT, std::string("save_state_range past n returned ") + status_name(status));
        status = opt.vt.save_state_range(opt.instance.handle(), begin, count, out.data(), out.size() - 1, &written);
        expect(status == PANGEA_ERR_CAPACITY, std::string("save_state_range into a small buffer returned ") + status_name(status));
        const auto other_count = opt.save_range(begin, count - 1);
        status = opt.vt.load_state_range(opt.instance.handle(), begin, count, other_count.data(), other_count.size());
        expect(status == PANGEA_ERR_CORRUPT,
               std::string("load_state_range of another count's bytes returned ") + status_name(status));
        const std::vector<uint8_t> garbage(out.size(), 0xEE);
        status = opt.vt.load_state_range(opt.instance.handle(), begin, count, garbage.data(), garbage.size());
        expect(status == PANGEA_ERR_CORRUPT, std::string("load_state_range of garbage returned ") + status_name(status));
        expect(opt.save() == state, "a failed load_state_range changed the state");
    });
}


}  // namespace

void check_optim(Report& report, const Subject& subject) {
    const size_t n = 1027;
    check_ranges(report, subject, n);

    report.run(subject.check_name("a zero pseudo-gradient from fresh state changes nothing"), [&] {
        Optimizer opt(subject, n);
        auto params = random_normal(n, 1);
        const auto before = params;
        opt.step(params, std::vector<float>(n, 0.0f));
        expect(params == before, "parameters moved");
    });

    report.run(subject.check_name("a step moves parameters against the pseudo-gradient"), [&] {
        Optimizer opt(subject, n);
        std::vector<float> params(n, 0.0f);
        opt.step(params, std::vector<float>(n, 1.0f));
        for (float p : params) expect(p <= 0.0f, "a parameter moved along a positive pseudo-gradient");
    });

    report.run(subject.check_name("saved state reloads and continues identically"), [&] {
        Optimizer a(subject, n);
        auto params_a = random_normal(n, 2);
        for (uint32_t i = 0; i < 3; ++i) a.step(params_a, random_normal(n, 10 + i));
        const auto state = a.save();
        Optimizer b(subject, n);
        const pangea_status status = b.vt.load_state(b.instance.handle(), state.data(), state.size());
        expect(status == PANGEA_OK, b.instance.describe_failure("load_state", status));
        auto params_b = params_a;
        const auto grad = random_normal(n, 99);
        a.step(params_a, grad);
        b.step(params_b, grad);
        expect(params_a == params_b, "after load_state the next step differs");
    });

    report.run(subject.check_name("bad state bytes are PANGEA_ERR_CORRUPT and keep the old state"), [&] {
        Optimizer opt(subject, n);
        auto params = random_normal(n, 3);
        opt.step(params, random_normal(n, 4));
        const auto state = opt.save();
        std::vector<std::vector<uint8_t>> bad_states;
        bad_states.push_back(state);
        bad_states.back().push_back(0);  // one byte too long
        if (!state.empty()) {
            bad_states.emplace_back(state.size(), 0xEE);               // garbage
            bad_states.emplace_back(state.begin(), state.end() - 1);  // one byte short
        }
        for (const auto& bad : bad_states) {
            const pangea_status status = opt.vt.load_state(opt.instance.handle(), bad.data(), bad.size());
            expect(status == PANGEA_ERR_CORRUPT,
                   std::string("load_state of bad bytes returned ") + status_name(status));
            expect(!opt.instance.last_error().empty(), "no last_error() text after a failure");
        }
        expect(opt.save() == state, "a failed load_state changed the state");
    });

    report.run(subject.check_name("mismatched size and small buffers are refused"), [&] {
        Optimizer opt(subject, n);
        std::vector<float> params(n + 1, 0.0f), grad(n + 1, 1.0f);
        pangea_status status = opt.vt.step(opt.instance.handle(), params.data(), grad.data(), n + 1);
        expect(status == PANGEA_ERR_INVALID_ARGUMENT,
               std::string("step with n other than init()'s returned ") + status_name(status));
        const size_t state_size = opt.vt.state_size(opt.instance.handle());
        if (state_size == 0) return;  // a stateless optimizer has no buffer to overflow
        std::vector<uint8_t> small(state_size - 1);
        size_t written = 0;
        status = opt.vt.save_state(opt.instance.handle(), small.data(), small.size(), &written);
        expect(status == PANGEA_ERR_CAPACITY,
               std::string("save_state into a small buffer returned ") + status_name(status));
    });
}

}  // namespace pangea::conformance
