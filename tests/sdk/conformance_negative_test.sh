#!/usr/bin/env bash
# The conformance runner must catch broken plugins, not only pass good ones.
#   conformance_negative_test.sh <pangea-plugin-check> <fixtures dir>
set -uo pipefail
check=$1 fixtures=$2
source "$(dirname "${BASH_SOURCE[0]}")/../lib/expect.sh"

expect "a library the host rejects fails the run" 1 \
    "[FAIL] libsmall_vtable.so: loads through the host: cannot load plugin library" -- \
    "$check" "$fixtures/broken/libsmall_vtable.so"
expect "a plugin whose encode fails is caught" 1 \
    "[FAIL] compress/probe: round trip stays within the declared error_bound: compress/probe: encode failed with PANGEA_ERR_UNSUPPORTED" -- \
    "$check" --set key=x "$fixtures/good/libprobe.so"
expect "a plugin with a required setting and no --set is skipped with the reason" 0 \
    "[skip] compress/probe: all checks: required setting 'key' has no value: pass --set key=..." -- \
    "$check" "$fixtures/good/libprobe.so"

skips=$(mktemp)
trap 'rm -f "$skips"' EXIT
"$check" --set key=x "$fixtures/good/libprobe.so" | sed -n 's/^  \[FAIL\] \([^:]*: [^:]*\): .*/\1 -- the probe does not encode/p' >"$skips"
expect "a skip file skips the named checks and says why" 0 \
    "[skip] compress/probe: round trip stays within the declared error_bound: the probe does not encode" -- \
    "$check" --set key=x --skip "$skips" "$fixtures/good/libprobe.so"
printf 'compress/probe: no such check -- typo\n' >"$skips"
expect "a skip entry that names no check fails the run" 1 "names no check that ran: \"compress/probe: no such check\"" -- \
    "$check" --skip "$skips" "$fixtures/good/libprobe.so"
expect "--set values are checked against the declared range" 2 "--set level=10: expected an integer in [1, 9]" -- \
    "$check" --set key=x --set level=10 "$fixtures/good/libprobe.so"
expect "a --set that no plugin declares is an error, not a silent default" 2 \
    "--set levle=3: no plugin in these libraries declares a setting 'levle'" -- \
    "$check" --set key=x --set levle=3 "$fixtures/good/libprobe.so"
expect "--plugin names a plugin the libraries must provide" 2 "--plugin compress/nope: these libraries provide no such plugin" -- \
    "$check" --set key=x --plugin compress/nope "$fixtures/good/libprobe.so"
printf 'no separator here\n' >"$skips"
expect "a malformed skip file is an error naming the line" 2 "$skips:1: expected" -- \
    "$check" --skip "$skips" "$fixtures/good/libprobe.so"

# The compress checks of ABI 1.4 (gather and error feedback), on a gather codec that is sound
# but for the flaw its `flaw` setting picks (tests/fixtures/flawed_gather_plugin.cpp). Each flaw
# fails its own check, and only that one.
flawed=$fixtures/flawed/libflawed_gather.so
expect "the gather fixture without a flaw passes every check" 0 "passed, 0 failed," -- "$check" "$flawed"
expect "decoding that depends on what the instance decoded before fails the gather check" 1 \
    "[FAIL] compress/flawed-gather: gathered messages sum the same bits on every node: two instances summed the 4 messages" -- \
    "$check" --set flaw=stateful "$flawed"
expect "... which the one-message checks cannot see" 1 \
    "[pass] compress/flawed-gather: decode_accumulate adds what decode gives" -- \
    "$check" --set flaw=stateful "$flawed"
expect "values a codec never delivers fail the error-feedback check" 1 \
    "[FAIL] compress/flawed-gather: error feedback keeps the running sum close: x holding only" -- \
    "$check" --set flaw=lost_blocks "$flawed"
expect "... and only it" 1 "passed, 1 failed," -- "$check" --set flaw=lost_blocks "$flawed"
expect "a decode that overshoots fails the error-feedback check, though within its error_bound" 1 \
    "[FAIL] compress/flawed-gather: error feedback keeps the running sum close: " -- \
    "$check" --set flaw=overshoot "$flawed"
expect "... and only it" 1 "passed, 1 failed," -- "$check" --set flaw=overshoot "$flawed"
expect "a codec that cannot encode n = 0 fails the exact-size check" 1 \
    "[FAIL] compress/flawed-gather: encode writes at most max_encoded_size and decodes from exactly what it wrote: compress/flawed-gather: encode into max_encoded_size bytes (n=0) failed with PANGEA_ERR_INVALID_ARGUMENT" -- \
    "$check" --set flaw=empty "$flawed"
expect "a gather codec whose library answers a 1.3 host is caught" 1 \
    "[FAIL] compress/flawed-gather: a gather codec's library refuses hosts older than ABI 1.4: offered ABI 1.3, the library answered PANGEA_OK, not PANGEA_ERR_VERSION" -- \
    "$check" "$fixtures/flawed/libflawed_gather_old_hosts.so"

expect_summary
