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

expect_summary
