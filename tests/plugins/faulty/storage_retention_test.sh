#!/usr/bin/env bash
# Retention that fails: storage/faulty wrapping storage/local cannot remove anything, so after
# each save the old checkpoints (checkpoint.keep = 1) stay. Every save itself is complete and
# becomes the latest, so none of them is a failed save, and the log must not say that the
# previous checkpoint stays the latest. One node, a checkpoint every 2 of 6 outer steps.
#   storage_retention_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
write_manifest 1
dir=$work/prune
bounded 300 prune -- "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$dir" --set diloco.outer_steps=6 \
    --set checkpoint.interval=2 --set checkpoint.keep=1 --set storage.plugin=faulty --set storage.inner=local \
    --set storage.inner_settings=path="$dir/ckpt" --set storage.fail=remove --set storage.times=-1
check_rc "a run whose storage cannot remove goes on" 0
expect "latest names the last checkpoint" 0 "step-00000006" -- cat "$dir/ckpt/faulty/latest"
expect "every checkpoint is complete" 0 "3" -- bash -c "ls '$dir'/ckpt/faulty/step-*/node-0.json | wc -l"
expect "the failed removal is logged with the plugin's error" 0 \
    "storage/faulty: remove of faulty/step-00000002/node-0.json failed with PANGEA_ERR_IO: faulty: injected failure of remove" \
    -- cat "$work/prune.out"
expect "the saves count as saved, not failed (a failed clean-up is not a failed save)" 0 "saved 3, failed 0" -- \
    echo "saved $(json_field "$dir/summary/node-0.json" checkpoints_saved), failed $(json_field "$dir/summary/node-0.json" checkpoints_failed)"
expect_rc "the log does not claim the previous checkpoint stays the latest" 0 -- \
    bash -c "! grep 'stays the latest' '$work/prune.out'"
expect_summary
