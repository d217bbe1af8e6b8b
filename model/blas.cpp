// Debian's LibTorch is built with BLAS_INFO=generic: it calls whatever libblas.so.3 the dynamic
// linker found, which on a fresh machine is netlib's reference BLAS, about 16x slower than
// OpenBLAS on the same cores. The definition of sgemm_ in global lookup order (the one LibTorch
// was bound to) tells which one runs.
#include "blas.hpp"

#include <ATen/Version.h>
#include <dlfcn.h>

#include <filesystem>
#include <string>


namespace pangea {

BlasReport check_blas() {
    BlasReport report;
    const std::string config = at::show_config();
    const auto info_at = config.find("BLAS_INFO=");
    const std::string built_with =
        info_at == std::string::npos ? "unknown" : config.substr(info_at + 10, config.find(',', info_at) - info_at - 10);
    void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
    Dl_info where{};
    if (sgemm == nullptr || dladdr(sgemm, &where) == 0 || where.dli_fname == nullptr) {
        // No shared BLAS in the process: LibTorch carries its own (PyTorch's builds link MKL in).
        report.name = "built into LibTorch (BLAS_INFO=" + built_with + ")";
        return report;
    }
    std::error_code error;
    const std::filesystem::path path = std::filesystem::canonical(where.dli_fname, error);
    report.library = error ? std::string(where.dli_fname) : path.string();
    // Debian's alternatives give each implementation its own directory (openblas-pthread/,
    // blis-openmp/, blas/ for the reference one); elsewhere the file names say it.
    const auto has = [&](const char* part) { return report.library.find(part) != std::string::npos; };
    if (has("openblas")) {
        const auto get_config = reinterpret_cast<const char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
        report.name = get_config != nullptr ? std::string("OpenBLAS (") + get_config() + ")" : "OpenBLAS";
    } else if (has("blis")) {
        report.name = "BLIS";
    } else if (has("mkl")) {
        report.name = "Intel MKL";
    } else if (has("atlas")) {
        report.name = "ATLAS";
    } else if (path.filename().string().rfind("libblas.so", 0) == 0) {
        report.name = "the reference BLAS";
        report.reference = true;
        report.warning = "LibTorch multiplies matrices with the reference BLAS (" + report.library +
                         "): training runs about 16x slower than this machine allows. Install an optimized BLAS: "
                         "apt-get install libopenblas0-pthread (Debian/Ubuntu; it takes over libblas.so.3), "
                         "or see `update-alternatives --display libblas.so.3-$(gcc -dumpmachine)`";
    } else {
        report.name = "an unknown BLAS";
    }
    report.name += " from " + report.library;
    return report;
}

void set_blas_threads(int threads) {
    if (const auto set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(threads);
}

}  // namespace pangea
