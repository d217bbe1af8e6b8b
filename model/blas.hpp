// Which BLAS LibTorch's CPU matrix products call, found at run time.
#pragma once

#include <string>

namespace pangea {

struct BlasReport {
    std::string name;        // "OpenBLAS (...) from /usr/lib/...", "the reference BLAS from ..."
    std::string library;     // the shared library that defines sgemm_ for LibTorch ("" if none)
    bool reference = false;  // netlib's reference BLAS: about 16x slower than an optimized one
    std::string warning;     // what to install, when reference
};

BlasReport check_blas();

// Caps the threads of the BLAS LibTorch calls, where the library has its own pool: OpenBLAS
// sizes it from OMP_NUM_THREADS or the core count and ignores torch::set_num_threads, so
// `[train] threads` would not reach a node's matrix products. No-op for other libraries.
void set_blas_threads(int threads);

}  // namespace pangea
