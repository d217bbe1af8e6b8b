// optim/faulty: wraps another outer optimizer (`inner`, default nesterov) and fails chosen calls
// of init, step, save_state, load_state, save_state_range and load_state_range (see
// plugins/shared/faulty.hpp, docs/plugins/faulty.md).
#include "../../shared/faulty.hpp"
#include "pangea/optim.h"

namespace {

using faulty::Instance;

enum Function { kInit, kStep, kSaveState, kLoadState, kSaveStateRange, kLoadStateRange };

struct Spec {
    static constexpr const char* default_inner = "nesterov";
    static const faulty::KindSpec& spec() {
        static const faulty::KindSpec s{PANGEA_KIND_OPTIM, "optim", default_inner,
                                        {"init", "step", "save_state", "load_state", "save_state_range",
                                         "load_state_range"},
                                        sizeof(pangea_optim_vtable)};
        return s;
    }
};

const pangea_optim_vtable& inner_vt(Instance& f) { return f.vt<pangea_optim_vtable>(); }

pangea_status init(void* self, size_t n) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kInit); s != PANGEA_OK) return s;
    return inner_vt(f).init(f.inner(), n);
}

pangea_status step(void* self, float* params, const float* pseudo_grad, size_t n) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kStep); s != PANGEA_OK) return s;
    return inner_vt(f).step(f.inner(), params, pseudo_grad, n);
}

size_t state_size(void* self) {
    Instance& f = Instance::of(self);
    f.forget_error();
    return inner_vt(f).state_size(f.inner());
}

pangea_status save_state(void* self, uint8_t* dst, size_t capacity, size_t* written) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kSaveState); s != PANGEA_OK) return s;
    return inner_vt(f).save_state(f.inner(), dst, capacity, written);
}

pangea_status load_state(void* self, const uint8_t* src, size_t bytes) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kLoadState); s != PANGEA_OK) return s;
    return inner_vt(f).load_state(f.inner(), src, bytes);
}

size_t range_state_size(void* self, size_t count) {
    Instance& f = Instance::of(self);
    f.forget_error();
    return inner_vt(f).range_state_size(f.inner(), count);
}

pangea_status save_state_range(void* self, size_t begin, size_t count, uint8_t* dst, size_t capacity, size_t* written) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kSaveStateRange); s != PANGEA_OK) return s;
    return inner_vt(f).save_state_range(f.inner(), begin, count, dst, capacity, written);
}

pangea_status load_state_range(void* self, size_t begin, size_t count, const uint8_t* src, size_t bytes) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kLoadStateRange); s != PANGEA_OK) return s;
    return inner_vt(f).load_state_range(f.inner(), begin, count, src, bytes);
}

// (The inner plugin's vtable comes adapted to this host's layout: the range slots are there,
// answering PANGEA_ERR_UNSUPPORTED for a plugin without them.)
const pangea_optim_vtable vtable = {faulty::header<Spec>(), &init,       &step, &state_size, &save_state, &load_state,
                                    &range_state_size,      &save_state_range, &load_state_range};

}  // namespace

PANGEA_FAULTY_PLUGIN(Spec, vtable, PANGEA_KIND_OPTIM,
                     "fault injection: wraps another outer optimizer and fails chosen calls (for tests)")
