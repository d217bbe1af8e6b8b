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
};


}  // namespace

void check_optim(Report& report, const Subject& subject) {
    const size_t n = 1027;

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
