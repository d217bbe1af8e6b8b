// storage/faulty: wraps another storage plugin (`inner`, default local: give its path in
// inner_settings) and fails chosen calls of open_write, write, commit, read, stat, list and
// remove (see plugins/shared/faulty.hpp, docs/plugins/faulty.md). Writers are the inner
// plugin's own. An injected commit failure aborts the inner writer first, since commit()
// releases the writer whatever it returns: the object does not appear.
#include "../../shared/faulty.hpp"
#include "pangea/storage.h"

namespace {

using faulty::Instance;

enum Function { kOpenWrite, kWrite, kCommit, kRead, kStat, kList, kRemove };

struct Spec {
    static constexpr const char* default_inner = "local";
    static const faulty::KindSpec& spec() {
        static const faulty::KindSpec s{PANGEA_KIND_STORAGE, "storage", default_inner,
                                        {"open_write", "write", "commit", "read", "stat", "list", "remove"},
                                        sizeof(pangea_storage_vtable)};
        return s;
    }
};

const pangea_storage_vtable& inner_vt(Instance& f) { return f.vt<pangea_storage_vtable>(); }

// In a namespace of their own: read, write, stat, abort and remove are also libc's.
namespace forward {

pangea_status open_write(void* self, const char* key, pangea_storage_writer** out_writer) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kOpenWrite); s != PANGEA_OK) return s;
    return inner_vt(f).open_write(f.inner(), key, out_writer);
}

pangea_status write(void* self, pangea_storage_writer* writer, const void* data, size_t bytes) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kWrite); s != PANGEA_OK) return s;
    return inner_vt(f).write(f.inner(), writer, data, bytes);
}

pangea_status commit(void* self, pangea_storage_writer* writer) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kCommit); s != PANGEA_OK) {
        if (writer != nullptr) inner_vt(f).abort(f.inner(), writer);  // commit releases the writer
        return s;
    }
    return inner_vt(f).commit(f.inner(), writer);
}

void abort(void* self, pangea_storage_writer* writer) {
    Instance& f = Instance::of(self);
    f.forget_error();
    inner_vt(f).abort(f.inner(), writer);
}

pangea_status read(void* self, const char* key, uint64_t offset, void* dst, size_t bytes, size_t* read_bytes) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kRead); s != PANGEA_OK) return s;
    return inner_vt(f).read(f.inner(), key, offset, dst, bytes, read_bytes);
}

pangea_status stat(void* self, const char* key, uint64_t* size) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kStat); s != PANGEA_OK) return s;
    return inner_vt(f).stat(f.inner(), key, size);
}

pangea_status list(void* self, const char* prefix, pangea_storage_list_fn fn, void* user) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kList); s != PANGEA_OK) return s;
    return inner_vt(f).list(f.inner(), prefix, fn, user);
}

pangea_status remove(void* self, const char* key) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kRemove); s != PANGEA_OK) return s;
    return inner_vt(f).remove(f.inner(), key);
}

}  // namespace forward

const pangea_storage_vtable vtable = {faulty::header<Spec>(), &forward::open_write, &forward::write,
                                      &forward::commit,       &forward::abort,      &forward::read,
                                      &forward::stat,         &forward::list,       &forward::remove};

}  // namespace

PANGEA_FAULTY_PLUGIN(Spec, vtable, PANGEA_KIND_STORAGE,
                     "fault injection: wraps another storage plugin and fails chosen calls (for tests)")
