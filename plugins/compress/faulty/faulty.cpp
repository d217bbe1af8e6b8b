// compress/faulty: wraps another compressor (`inner`, default none) and fails chosen calls of
// encode, decode and decode_accumulate (see plugins/shared/faulty.hpp, docs/plugins/faulty.md).
#include "../../shared/faulty.hpp"
#include "pangea/compress.h"

namespace {

using faulty::Instance;

enum Function { kEncode, kDecode, kDecodeAccumulate };

struct Spec {
    static constexpr const char* default_inner = "none";
    static const faulty::KindSpec& spec() {
        static const faulty::KindSpec s{PANGEA_KIND_COMPRESS, "compress", default_inner,
                                        {"encode", "decode", "decode_accumulate"},
                                        sizeof(pangea_compress_vtable)};
        return s;
    }
};

const pangea_compress_vtable& inner_vt(Instance& f) { return f.vt<pangea_compress_vtable>(); }

size_t max_encoded_size(void* self, size_t n) {
    Instance& f = Instance::of(self);
    f.forget_error();
    return inner_vt(f).max_encoded_size(f.inner(), n);
}

pangea_status encode(void* self, const float* src, size_t n, uint8_t* dst, size_t dst_capacity, size_t* written) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kEncode); s != PANGEA_OK) return s;
    return inner_vt(f).encode(f.inner(), src, n, dst, dst_capacity, written);
}

pangea_status decode(void* self, const uint8_t* src, size_t bytes, float* dst, size_t n) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kDecode); s != PANGEA_OK) return s;
    return inner_vt(f).decode(f.inner(), src, bytes, dst, n);
}

pangea_status decode_accumulate(void* self, const uint8_t* src, size_t bytes, float* acc, size_t n) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kDecodeAccumulate); s != PANGEA_OK) return s;
    return inner_vt(f).decode_accumulate(f.inner(), src, bytes, acc, n);
}

// Never the identity: the host would then skip the codec, and with it the failures to inject.
uint64_t capabilities(void* self) {
    Instance& f = Instance::of(self);
    f.forget_error();
    return inner_vt(f).capabilities(f.inner()) & ~PANGEA_COMPRESS_CAP_IDENTITY;
}

double error_bound(void* self) {
    Instance& f = Instance::of(self);
    f.forget_error();
    return inner_vt(f).error_bound(f.inner());
}

const pangea_compress_vtable vtable = {faulty::header<Spec>(), &max_encoded_size, &encode, &decode,
                                       &decode_accumulate, &capabilities, &error_bound};

}  // namespace

PANGEA_FAULTY_PLUGIN(Spec, vtable, PANGEA_KIND_COMPRESS,
                     "fault injection: wraps another compressor and fails chosen calls (for tests)")
