#!/usr/bin/env bash
# The SDK as a product a plugin author installs alone: configure Pangea's source with
# PANGEA_SDK_ONLY while every package but the compiler's own is hidden from CMake, install the
# "sdk" component, then build the installed example against it twice (its CMake package, and
# pkg-config with the compiler alone) and pass both through the installed pangea-plugin-check.
#   sdk_only_test.sh <pangea source dir>
set -uo pipefail
source=$(cd "$1" && pwd)
source "$source/tests/lib/expect.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

hidden=()
for package in Boost CLI11 tomlplusplus OpenSSL nlohmann_json CURL Torch GTest Gloo UCX PkgConfig; do
    hidden+=("-DCMAKE_DISABLE_FIND_PACKAGE_$package=TRUE")
done
expect_rc "configures with nothing but a compiler and CMake" 0 -- \
    cmake -S "$source" -B "$work/build" -DPANGEA_SDK_ONLY=ON "${hidden[@]}"
expect_rc "builds" 0 -- cmake --build "$work/build" --parallel 2
expect_rc "installs the sdk component" 0 -- cmake --install "$work/build" --component sdk --prefix "$work/prefix"

prefix=$work/prefix
pc=$(find "$prefix" -name pangea-sdk.pc | head -1)
docs=$prefix/share/doc/pangea-sdk
for file in include/pangea/plugin.h include/pangea/sdk.hpp include/pangea/v1_0/compress.h \
            bin/pangea-plugin-check share/doc/pangea-sdk/plugin-abi.md \
            share/doc/pangea-sdk/examples/trim16/trim16.cpp; do
    expect_rc "installs $file" 0 -- test -f "$prefix/$file"
done
expect_rc "installs the CMake package" 0 -- test -n "$(find "$prefix" -name PangeaSDKConfig.cmake)"
expect_rc "installs the pkg-config file" 0 -- test -n "$pc"
expect_rc "installs nothing of the runtime (no pangea)" 1 -- test -e "$prefix/bin/pangea"

expect_rc "the installed example builds with the CMake package" 0 -- bash -c \
    "cmake -S '$docs/examples/trim16' -B '$work/example' -DCMAKE_PREFIX_PATH='$prefix' >/dev/null && cmake --build '$work/example' >/dev/null"
expect "... and passes the installed pangea-plugin-check" 0 "0 failed" -- \
    "$prefix/bin/pangea-plugin-check" "$work/example/libpangea-example-trim16.so"

export PKG_CONFIG_PATH=$(dirname "$pc")
map=$(pkg-config --variable=plugin_map pangea-sdk)
expect_rc "pkg-config names the linker script that is installed" 0 -- test -f "$map"
expect_rc "the example builds with pkg-config and the compiler alone" 0 -- \
    c++ -std=c++17 -O2 -shared -fPIC -fvisibility=hidden -ffp-contract=off $(pkg-config --cflags pangea-sdk) \
        -Wl,--no-undefined -Wl,--version-script="$map" -o "$work/libtrim16.so" "$docs/examples/trim16/trim16.cpp"
expect "... and passes too, exporting only its entry point" 0 "exports only entry points" -- \
    "$prefix/bin/pangea-plugin-check" "$work/libtrim16.so"
expect_summary
