#!/usr/bin/env bash
# Checkpoints through a storage plugin that fails (storage/faulty wrapping storage/local), one
# node, a checkpoint every 2 of 6 outer steps:
#   1. every commit fails from the middle of the second checkpoint on: the run says why (the
#      plugin's error, by object), trains on to the same parameters, `latest` still names the
#      first checkpoint, which is whole, and `--resume latest` from it ends bit-identical;
#   2. one write fails, in the second checkpoint: that save fails, the next ones succeed, and the
#      half-written checkpoint is cleaned up;
#   3. reading fails on resume: the run stops at once with the plugin's error;
#   4. `pangea launch`, two nodes, one checkpoint saved and then every commit failing: the end
#      table shows each node's saves and last good checkpoint, warns, and the exit status is 3.
# (A failing retention, storage_retention_test.sh, is a test of its own.)
#   storage_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
write_manifest 1
six=(--set diloco.outer_steps=6 --set checkpoint.interval=2)
local_at() { echo --set storage.plugin=local --set storage.path="$1"; }
# faulty_at DIR SETTING=VALUE...: storage/faulty over storage/local in DIR.
faulty_at() {
    local dir=$1; shift
    echo --set storage.plugin=faulty --set storage.inner=local --set storage.inner_settings=path="$dir"
    for s in "$@"; do echo --set "storage.$s"; done
}
latest() { cat "$1/faulty/latest" 2>/dev/null; }
field() { json_field "$1/summary/node-0.json" "$2"; }

# 0. The reference: storage/local, nothing fails.
bounded 300 reference -- "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/ref" "${six[@]}" \
    $(local_at "$work/ref/ckpt")
check_rc "the reference run" 0
want=$(field "$work/ref" params_hash)

# 1. A checkpoint holds 7 objects (5 parts, node-0.json, latest), each committed once: the 10th
#    commit is the third part of the second checkpoint (step 4). From there on all fail.
dir=$work/persistent
bounded 300 persistent -- "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$dir" "${six[@]}" \
    $(faulty_at "$dir/ckpt" fail=commit after=9 times=-1)
check_rc "a run whose storage fails from the second checkpoint on goes on" 0
expect "it logs why the save failed: the plugin's error, naming the object" 0 \
    "could not save storage/faulty faulty/step-00000004/: storage/faulty: commit of faulty/step-00000004/node-0/inner_optimizer.bin failed with PANGEA_ERR_IO: faulty: injected failure of commit (call 10 of commit on storage/local)" \
    -- cat "$work/persistent.out"
expect "... and that the previous checkpoint stays the latest" 0 "the previous checkpoint stays the latest; training goes on" \
    -- cat "$work/persistent.out"
expect "the summary counts 1 saved, 2 failed" 0 "1 2" -- echo "$(field "$dir" checkpoints_saved) $(field "$dir" checkpoints_failed)"
expect_equal "training was not affected: the parameters are the reference's" "$want" "$(field "$dir" params_hash)"
expect "latest still names the first checkpoint" 0 "step-00000002" -- latest "$dir/ckpt"
expect_rc "the parts of step 4 that were committed are there, its header is not" 0 -- \
    test -f "$dir/ckpt/faulty/step-00000004/shared/outer_optimizer.bin.0-of-1" -a ! -e "$dir/ckpt/faulty/step-00000004/node-0.json"
expect "no temporary file of a failed commit is left" 0 "partial: 0" -- \
    bash -c "echo partial: \$(ls -A '$dir/ckpt/.partial' 2>/dev/null | wc -l)"
steps=$("$pangea" checkpoint list "$work/run.toml" --set run.dir="$dir" $(local_at "$dir/ckpt") | awk 'NR > 2 { print $1 }' | paste -sd' ')
expect_rc "checkpoint list shows only the complete checkpoint (steps: $steps)" 0 -- test "$steps" = 2
expect "the latest checkpoint verifies" 0 "inner_optimizer.bin: ok" -- \
    "$pangea" checkpoint inspect "$work/run.toml" latest --set run.dir="$dir" $(local_at "$dir/ckpt")
bounded 300 resume -- "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$dir" "${six[@]}" \
    $(local_at "$dir/ckpt") --resume latest
check_rc "--resume latest carries on from it" 0
expect "... from step 2" 0 "resuming from storage/local faulty/step-00000002/" -- cat "$work/resume.out"
expect_equal "... and ends bit-identical to the reference" "$want" "$(field "$dir" params_hash)"
expect "... with its own checkpoints complete" 0 "step-00000006" -- latest "$dir/ckpt"

# 2. One write fails: the first write of the second checkpoint (the first checkpoint makes 9
#    writes: the safetensors file in 3, every other object in 1).
dir=$work/transient
bounded 300 transient -- "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$dir" "${six[@]}" \
    $(faulty_at "$dir/ckpt" fail=write after=9 times=1 status=timeout)
check_rc "a run with one failed write goes on" 0
expect "the save of step 4 fails with the plugin's error" 0 \
    "could not save storage/faulty faulty/step-00000004/: storage/faulty: write of faulty/step-00000004/shared/model.safetensors.0-of-1 failed with PANGEA_ERR_TIMEOUT: faulty: injected failure of write" \
    -- cat "$work/transient.out"
expect "the later saves succeed" 0 "saved storage/faulty faulty/step-00000006/" -- cat "$work/transient.out"
expect "the summary counts 2 saved, 1 failed" 0 "2 1" -- echo "$(field "$dir" checkpoints_saved) $(field "$dir" checkpoints_failed)"
expect "latest names the last checkpoint" 0 "step-00000006" -- latest "$dir/ckpt"
expect_rc "the failed checkpoint left nothing behind" 0 -- test ! -e "$dir/ckpt/faulty/step-00000004"
expect_equal "the parameters are the reference's" "$want" "$(field "$dir" params_hash)"

# 3. Reads fail: resuming stops before training, naming the plugin and the object.
bounded 120 unreadable -- "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/ref" "${six[@]}" \
    $(faulty_at "$work/ref/ckpt" fail=read times=-1) --resume latest
check_rc "resuming through storage that cannot read fails" 1
expect "... with the plugin's error" 0 \
    "storage/faulty: read of faulty/step-00000006/node-0.json failed with PANGEA_ERR_IO: faulty: injected failure of read" \
    -- cat "$work/unreadable.out"

# 4. Two nodes through `pangea launch`: a node commits at most 8 objects for the first
#    checkpoint, so with the 11th commit on failing, the first checkpoint is whole and every
#    later save fails.
write_manifest 2
dir=$work/launch
bounded 300 launch -- "$pangea" launch "$work/run.toml" --set run.dir="$dir" "${six[@]}" \
    $(faulty_at "$dir/ckpt" fail=commit after=10 times=-1)
check_rc "a launch whose checkpoints fail trains to the end and says so in its exit status" 3
expect "the end table shows each node's saves and last good checkpoint" 0 \
    "checkpoints (saved/failed/skipped, last)" -- cat "$work/launch.out"
expect "... a node that saved the first and failed the others" 0 "1/2/0, step 2" -- cat "$work/launch.out"
expect "... and warns, naming the node's log" 0 \
    "WARNING: node 1 failed 2 of 3 checkpoint saves; its last good checkpoint is step 2: see $dir/logs/node-1.log" \
    -- cat "$work/launch.out"
expect "the nodes agree all the same" 0 "all nodes hold bit-identical parameters" -- cat "$work/launch.out"
write_manifest 1

expect_summary
