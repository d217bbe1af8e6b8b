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

}  // namespace pangea
