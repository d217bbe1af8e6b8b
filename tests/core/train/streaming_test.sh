#!/usr/bin/env bash
# Streaming DiLoCo with overlap, with real processes and real signals: nodes sync 3 fragments in
# turn ([diloco] fragments), each all-reduce running while the next round trains (overlap).
# - Checkpoints: a checkpoint lands the average in flight first, and keeps each node's model
#   parameters beside the synced ones (the fragments not synced last hold local progress). Two
#   nodes SIGKILLed after a checkpoint and resumed with `--resume latest` end bit-identical to a
#   launch that never stopped.
# - Below [mesh] min_members: two nodes of three wait for the third, which joins with --join and
#   takes up the state a member offers while its training thread waits for the run; all three
#   end bit-identical. (Kills, stops and joins mid-run: mesh.faults.overlap.)
# - Overlap without fragments, and fragments that do not divide inner_steps, are refused by name.
#   streaming_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/tiny_run.sh"
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT

# 6 outer steps of 3 inner steps: 18 rounds of one inner step; a checkpoint every 2 outer steps
# (6 rounds).
tiny_run_manifest "$work/run.toml" streaming 11 2 6 'ring_order = "rank"
[compress]
plugin = "int8"
[checkpoint]
interval = 2'
streaming=(--set diloco.fragments=3 --set diloco.overlap=true)

expect "two nodes, 3 fragments, overlap, uninterrupted" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch "$work/run.toml" "${streaming[@]}" --set run.dir="$work/full"
want=$(json_field "$work/full/summary/node-0.json" params_hash)
expect "the run syncs 18 times, one fragment each" 0 '"outer_steps":18' -- cat "$work/full/summary/node-0.json"
expect "checkpoints are taken every 6 rounds" 0 "step-00000006" -- ls "$work/full/checkpoints/streaming"
step="$work/full/checkpoints/streaming/step-00000012"
expect "each node's local parameters are in the checkpoint, one fp32 per parameter, not the synced ones" 0 \
    "local parameters: 2 nodes" -- python3 - "$step" <<'PY'
import json, os, sys
step = sys.argv[1]
for node in (0, 1):
    header = json.load(open(os.path.join(step, f"node-{node}.json")))
    raw = open(os.path.join(step, f"node-{node}", "local_parameters.bin"), "rb").read()
    assert len(raw) == 4 * header["model"]["parameters"], (len(raw), header["model"]["parameters"])
    assert any(p["name"] == f"node-{node}/local_parameters.bin" for p in header["parts"])
assert open(os.path.join(step, "node-0", "local_parameters.bin"), "rb").read() != \
       open(os.path.join(step, "node-1", "local_parameters.bin"), "rb").read(), "each node's are its own"
print("local parameters: 2 nodes")
PY

"$pangea" launch "$work/run.toml" "${streaming[@]}" --set run.dir="$work/killed" >"$work/killed.log" 2>&1 &
launcher=$!
wait_for 120 bash -c "[[ \$(cat '$work/killed/checkpoints/streaming/latest' 2>/dev/null) == step-0000000[6] ]]"
kill -9 "$launcher"
pkill -9 -f -- "run.dir=$work/killed( |\$)"; wait "$launcher" 2>/dev/null
expect "launch --resume latest takes up the synced and each node's local parameters" 0 \
    "all nodes hold bit-identical parameters" -- \
    "$pangea" launch "$work/run.toml" "${streaming[@]}" --set run.dir="$work/killed" --resume latest
expect_equal "... and ends bit-identical to the uninterrupted launch" "$want" \
    "$(json_field "$work/killed/summary/node-1.json" params_hash)"

# Below min_members: nodes 0 and 1 start, the run cannot commit until node 2 joins.
tiny_run_manifest "$work/three.toml" joiner 3 3 4 'min_members = 3
address = "127.0.0.1:0"'
"$pangea" coordinator "$work/three.toml" --run-id 7 --listen 127.0.0.1:0 --address-file "$work/coordinator.addr" \
    >"$work/coordinator.log" 2>&1 &
wait_for 30 test -s "$work/coordinator.addr"
node() {  # id, extra arguments
    local i=$1; shift
    "$pangea" run "$work/three.toml" --node-id "$i" --run-id 7 --set run.dir="$work/three" "${streaming[@]}" \
        --set mesh.coordinator="$(cat "$work/coordinator.addr")" "$@" >"$work/node-$i.log" 2>&1
}
node 0 & first=$!
node 1 & second=$!
wait_for 60 grep -q "is a member; step 0; members \[0, 1\]" "$work/coordinator.log"
node 2 --join; joiner_rc=$?
expect_rc "node 2 joins below min_members and finishes" 0 -- test "$joiner_rc" -eq 0
expect "... having taken up the state a waiting member offered" 0 "recovered the state of outer step 0" -- \
    cat "$work/node-2.log"
wait "$first"; first_rc=$?
wait "$second"; second_rc=$?
expect_rc "nodes 0 and 1 finish" 0 -- test "$first_rc$second_rc" = 00
expect_rc "all three end bit-identical" 0 -- \
    test "$(grep -ho '"params_hash":"[0-9a-f]*"' "$work"/three/summary/node-{0,1,2}.json | sort -u | wc -l)" -eq 1

expect "overlap without fragments is refused by name" 1 "overlap needs fragments >= 2" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/one" --set mesh.nodes=1 --set diloco.overlap=true
expect "fragments that do not divide inner_steps are refused by name" 1 "fragments = 2 must divide inner_steps = 3" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/two" --set mesh.nodes=1 --set diloco.fragments=2

expect_summary
