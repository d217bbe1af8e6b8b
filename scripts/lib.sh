# Shared by scripts/demo and scripts/test: install what is missing, then configure and build.
# Works as root on a fresh Debian 12 machine (apt-get update + install) and as a normal user
# when the packages are already present (sudo is used only if something is missing).

PANGEA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PANGEA_BUILD=${PANGEA_BUILD:-$PANGEA_ROOT/build}

# Debian packages the build and the tests need.
PANGEA_PACKAGES=(
    g++ cmake ninja-build ccache pkg-config
    libtomlplusplus-dev libcli11-dev
    libgtest-dev libgmock-dev libssl-dev procps libtorch-dev iproute2
    libcurl4-openssl-dev etcd-server libgloo-dev libucx-dev
    nlohmann-json3-dev libpugixml-dev libpcre2-dev zlib1g-dev
    # The Python package (python/): pybind11 and Debian's Python with its PyTorch (the same
    # LibTorch version as libtorch-dev).
    pybind11-dev python3-dev python3-torch
    # An optimized BLAS: Debian's LibTorch calls libblas.so.3, netlib's reference BLAS unless
    # OpenBLAS takes it over (16x faster training). libblas3 is the reference one, for the test
    # that the node warns about it.
    libopenblas0-pthread libblas3
)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

install_missing_packages() {
    local missing=()
    for package in "${PANGEA_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    say "installing ${missing[*]}"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            echo "error: missing packages ${missing[*]}; install them as root:" >&2
            echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
            exit 1
        fi
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# build_pangea [TARGET...]: everything, or only the targets named (e.g. runtime: the CLI and the
# plugins, what a training run needs).
build_pangea() {
    say "building ${*:-everything} in $PANGEA_BUILD"
    cmake -S "$PANGEA_ROOT" -B "$PANGEA_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    local targets=()
    for target in "$@"; do targets+=(--target "$target"); done
    cmake --build "$PANGEA_BUILD" --parallel "$(nproc)" "${targets[@]}"
}
