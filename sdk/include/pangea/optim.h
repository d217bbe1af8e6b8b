/*
 * pangea/optim.h: outer optimizer plugins (PANGEA_KIND_OPTIM).
 *
 * DiLoCo's outer step. After every round of inner steps the nodes all-reduce their
 * pseudo-gradients (last synced parameters minus current parameters, averaged over nodes) and the
 * outer optimizer turns that into new synced parameters. Works on flat fp32 buffers in host
 * memory; the optimizer's own state (momentum, ...) lives in the instance and is saved and loaded
 * as opaque bytes so that checkpoints and live recovery carry it.
 *
 * Threads: one instance is used by one thread at a time.
 */
#ifndef PANGEA_OPTIM_H
#define PANGEA_OPTIM_H

#include "pangea/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pangea_optim_vtable {
    pangea_vtable_header header;

    /* Prepares state for n parameters (zeroed momentum, ...). Called once before the first
     * step() and again whenever the parameter count changes; drops any earlier state. */
    pangea_status (*init)(void* instance, size_t n);

    /* One outer step: params[i] -= update(pseudo_grad[i]) for i < n. params is the last synced
     * parameters, updated in place; pseudo_grad (read only) is the averaged pseudo-gradient.
     * Both borrowed. PANGEA_ERR_INVALID_ARGUMENT if n differs from init(). */
    pangea_status (*step)(void* instance, float* params, const float* pseudo_grad, size_t n);

    /* The number of bytes save_state() writes now. */
    size_t (*state_size)(void* instance);

    /* Writes the state into dst (borrowed, capacity bytes) and the count to *written.
     * PANGEA_ERR_CAPACITY when capacity < state_size(). */
    pangea_status (*save_state)(void* instance, uint8_t* dst, size_t capacity, size_t* written);

    /* Replaces the state with bytes from save_state() of an instance with the same settings.
     * PANGEA_ERR_CORRUPT for bytes it did not write (bad header, wrong length); the old state is
     * kept on failure. */
    pangea_status (*load_state)(void* instance, const uint8_t* src, size_t bytes);

    /* ABI 1.3, optional: the state of a range of the parameters. An optimizer whose state is per
     * parameter (element i's update reads element i's state alone, as momentum's does) can step
     * any range of the parameters in an instance init()ed for that range, as an instance of all
     * of them would. A node of several workers then splits the outer step among them, each worker
     * an instance for its range, and a node with [diloco] fragments steps one fragment at a time;
     * these three move a range's state between an instance of all n parameters and one of the
     * range, so that what is saved for the run (save_state() of all n) does not depend on who
     * held which range. Both the range and the bytes are in the
     * instance's own format: the bytes of a range are what save_state() of an instance
     * init(count)ed holding that range writes. An optimizer that cannot split its state answers
     * PANGEA_ERR_UNSUPPORTED (and range_state_size 0); so does the host for plugins of an older
     * ABI, and the node then keeps the outer step whole (and refuses [diloco] fragments). */

    /* The bytes save_state_range() writes for `count` parameters (0: unsupported). */
    size_t (*range_state_size)(void* instance, size_t count);

    /* Writes the state of parameters [begin, begin + count) of this instance (init(n)ed) into dst
     * (borrowed, capacity bytes), the count to *written. PANGEA_ERR_INVALID_ARGUMENT when the
     * range goes past n, PANGEA_ERR_CAPACITY when capacity < range_state_size(count). */
    pangea_status (*save_state_range)(void* instance, size_t begin, size_t count, uint8_t* dst, size_t capacity,
                                      size_t* written);

    /* Replaces the state of parameters [begin, begin + count) of this instance with bytes that
     * save_state_range() (or save_state() of an instance init(count)ed) wrote, with the same
     * settings. PANGEA_ERR_INVALID_ARGUMENT when the range goes past n, PANGEA_ERR_CORRUPT for
     * bytes it did not write or of another count; the old state is kept on failure. */
    pangea_status (*load_state_range)(void* instance, size_t begin, size_t count, const uint8_t* src, size_t bytes);
} pangea_optim_vtable;

/* The size of an optim vtable of ABI 1.0 (unchanged up to 1.2): every slot is required. */
#define PANGEA_OPTIM_VTABLE_SIZE_1_0 (offsetof(pangea_optim_vtable, load_state) + sizeof(void (*)(void)))

#ifdef __cplusplus
}
#endif

#endif /* PANGEA_OPTIM_H */
