#!/usr/bin/env bash
# A third-party plugin without touching the core: install the SDK to a temporary prefix, build
# sdk/examples/trim16 against it alone, and load it through a manifest, the plugin search path
# and the conformance runner of the installed pangea. Then the same for the gather-mode example,
# sdk/examples/sign1.
#   out_of_tree_test.sh <pangea build dir> <pangea source dir>
set -euo pipefail
build=$1 source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$source/sdk/examples/trim16" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/example" >/dev/null
plugin=$work/example/libpangea-example-trim16.so
test -f "$plugin"

# The example found the installed SDK, not the source or build tree.
grep -qx "PangeaSDK_DIR:PATH=$work/prefix/lib/cmake/PangeaSDK" "$work/example/CMakeCache.txt" \
    || { echo "FAIL: the example did not build against the installed SDK"; exit 1; }
! grep -rqF -e "$source/sdk/include" -e "$build" "$work/example/CMakeFiles" \
    || { echo "FAIL: the example build refers to Pangea's source or build tree"; exit 1; }

cat >"$work/run.toml" <<TOML
[compress]
plugin = "trim16"
library = "example/libpangea-example-trim16.so"
bits = 12
TOML
out=$("$work/prefix/bin/pangea" manifest check "$work/run.toml")
grep -q 'plugin = "trim16"' <<<"$out" || { echo "FAIL: manifest did not select trim16:"; echo "$out"; exit 1; }
grep -q '^bits = 12 ' <<<"$out" || { echo "FAIL: trim16's setting not resolved:"; echo "$out"; exit 1; }

# Found by name through PANGEA_PLUGIN_PATH, beside the installed built-ins.
out=$(PANGEA_PLUGIN_PATH="$work/example" "$work/prefix/bin/pangea" plugins list)
grep -q '^compress  trim16 ' <<<"$out" || { echo "FAIL: plugins list lacks trim16:"; echo "$out"; exit 1; }
grep -q '^compress  none ' <<<"$out" || { echo "FAIL: installed built-ins not found:"; echo "$out"; exit 1; }

# A bad setting for the third-party plugin is caught by the host against its declaration.
sed -i 's/bits = 12/bits = 40/' "$work/run.toml"
if out=$("$work/prefix/bin/pangea" manifest check "$work/run.toml" 2>&1); then
    echo "FAIL: bits = 40 was accepted"; exit 1
fi
grep -qF 'run.toml:4:1: [compress] (plugin trim16) bits: expected an integer in [10, 32], got 40' <<<"$out" \
    || { echo "FAIL: wrong error: $out"; exit 1; }

"$work/prefix/bin/pangea-plugin-check" "$plugin"

# sign1 (PANGEA_COMPRESS_CAP_GATHER, min_host_abi_minor = 4), built the same way.
cmake -S "$source/sdk/examples/sign1" -B "$work/sign1" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/sign1" >/dev/null
sign1=$work/sign1/libpangea-example-sign1.so
test -f "$sign1"
grep -qx "PangeaSDK_DIR:PATH=$work/prefix/lib/cmake/PangeaSDK" "$work/sign1/CMakeCache.txt" \
    || { echo "FAIL: sign1 did not build against the installed SDK"; exit 1; }
! grep -rqF -e "$source/sdk/include" -e "$build" "$work/sign1/CMakeFiles" \
    || { echo "FAIL: the sign1 build refers to Pangea's source or build tree"; exit 1; }
out=$("$work/prefix/bin/pangea-plugin-check" "$sign1") || { echo "$out"; echo "FAIL: sign1 fails pangea-plugin-check"; exit 1; }
for check in "gathered messages sum the same bits on every node" \
             "a gather codec's library refuses hosts older than ABI 1.4" \
             "error feedback keeps the running sum close"; do
    grep -qxF "  [pass] compress/sign1: $check" <<<"$out" \
        || { echo "FAIL: pangea-plugin-check did not pass sign1's '$check'"; exit 1; }
done

# Found by name through PANGEA_PLUGIN_PATH, beside trim16 and the installed built-ins.
out=$(PANGEA_PLUGIN_PATH="$work/example:$work/sign1" "$work/prefix/bin/pangea" plugins list)
grep -qx "compress  sign1 .* $sign1" <<<"$out" || { echo "FAIL: plugins list lacks sign1:"; echo "$out"; exit 1; }
grep -q '^compress  trim16 ' <<<"$out" || { echo "FAIL: plugins list lacks trim16 beside sign1:"; echo "$out"; exit 1; }
out=$(PANGEA_PLUGIN_PATH="$work/sign1" "$work/prefix/bin/pangea" plugins show compress sign1)
grep -q '^  block_size  .*default 256' <<<"$out" || { echo "FAIL: plugins show lacks sign1's setting:"; echo "$out"; exit 1; }
