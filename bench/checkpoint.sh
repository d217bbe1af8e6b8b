#!/usr/bin/env bash
# Training stall per checkpoint, asynchronous against synchronous, on one node of the `small`
# model (about 25M parameters) saving after every outer step to storage/local. The stall is the
# training time a save costs (copying the state to host memory, plus any wait); the synchronous
# save's stall is the whole write. Target: async stall under 5% of the synchronous save time.
#
#   bench/checkpoint.sh [--model small] [--saves 4] [--dir /tmp]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
model=small saves=4 dir=/tmp
while [[ $# -gt 0 ]]; do
    case $1 in
        --model) model=$2; shift 2 ;;
        --saves) saves=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
source "$root/scripts/lib.sh"
install_missing_packages
build_pangea >/dev/null
pangea=$PANGEA_BUILD/bin/pangea
work=$(mktemp -d "$dir/pangea-checkpoint-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT

field() { grep -o "\"$2\":[^,}]*" "$1" | head -1 | cut -d: -f2 | tr -d '"'; }
common=(--node-id 0 --set mesh.nodes=1 --set model.preset="$model" --set diloco.inner_steps=2
        --set diloco.outer_steps="$saves" --set checkpoint.interval=1 --set checkpoint.keep=2
        --set train.eval_interval=0 --set data.eval_sequences=8)
for mode in sync async; do
    async=false; [[ $mode == async ]] && async=true
    say "$mode: $saves saves of the $model model"
    "$pangea" run "$root/examples/local.toml" "${common[@]}" --set run.dir="$work/$mode" \
        --set checkpoint.async=$async >"$work/$mode.log" 2>&1 || { tail "$work/$mode.log"; exit 1; }
done
summary() { echo "$work/$1/summary/node-0.json"; }
python3 - "$(summary sync)" "$(summary async)" "$saves" <<'PY'
import json, sys
sync, asyn, saves = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
mib = sync["checkpoint_bytes"] / saves / 2**20
s_stall = sync["checkpoint_stall_seconds"] / saves
a_stall = asyn["checkpoint_stall_seconds"] / saves
a_write = asyn["checkpoint_write_seconds"] / saves
print(f"checkpoint size       {mib:.1f} MiB ({sync['parameters'] / 1e6:.1f}M parameters)")
print(f"synchronous save      stall {s_stall:.3f} s per save ({mib / max(s_stall, 1e-9):.0f} MiB/s)")
print(f"asynchronous save     stall {a_stall:.3f} s per save (written in {a_write:.3f} s in the background)")
print(f"async stall / sync    {100 * a_stall / s_stall:.1f}% (target < 5%)")
PY
