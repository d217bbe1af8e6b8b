#!/usr/bin/env bash
# A full disk during a checkpoint: a real tmpfs too small for one checkpoint, mounted in a mount
# namespace of its own (root). The save fails as PANGEA_ERR_NO_SPACE with the system's text,
# training goes on, and nothing half-written is left behind.
#   full_disk_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/tiny_run.sh"
if [[ $(id -u) -ne 0 ]] || ! unshare -m true 2>/dev/null; then
    echo "SKIP: needs root for a mount namespace"; exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/run/checkpoints"
tiny_run_manifest "$work/run.toml" full 5 1 4 'ring_order = "rank"
[checkpoint]
interval = 2'

# Runs pangea with a 256 KiB disk under the checkpoints, then lists what the disk holds.
run_on_small_disk() {
    unshare -m bash -c '
        mount -t tmpfs -o size=256k tmpfs "$1/run/checkpoints" || exit 99
        "$2" run "$1/run.toml" --node-id 0 --set run.dir="$1/run"; rc=$?
        echo "left on the disk: $(find "$1/run/checkpoints" -type f | wc -l) files"
        exit $rc' _ "$work" "$pangea"
}
out=$(run_on_small_disk 2>&1); rc=$?
expect "the run finishes" 0 "done: eval loss" -- bash -c 'echo "$1"; exit $2' _ "$out" "$rc"
expect "the failed save says the disk is full, with the system's text" 0 \
    "failed with PANGEA_ERR_NO_SPACE: cannot write" -- echo "$out"
expect "... naming the system's reason" 0 "No space left on device" -- echo "$out"
expect "and that training goes on" 0 "the previous checkpoint stays the latest; training goes on" -- echo "$out"
expect "no half-written object is left on the disk" 0 "left on the disk: 0 files" -- echo "$out"
expect_summary
