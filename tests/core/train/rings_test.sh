#!/usr/bin/env bash
# Parallel rings in the outer all-reduce ([mesh] rings): each ring all-reduces its share of the
# buffer over connections of its own.
#   - two nodes, fp32: 3 rings end bit-identical to 1 (each value is the same sum of two, however
#     the buffer is cut);
#   - three nodes, int8, 2 rings: every node holds the same bits, and each node says so;
#   - a node SIGKILLed mid-run: the others fail both rings at once, retry without it and finish;
#   - a node whose [mesh] rings differs from the run's is refused by the coordinator, saying why.
#   rings_test.sh <pangea binary>
set -uo pipefail
pangea=$1
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/../../lib/expect.sh"
source "$here/../../lib/tiny_run.sh"
work=$(mktemp -d)
trap 'pkill -9 -f -- "$work" 2>/dev/null; rm -rf "$work"' EXIT

tiny_run_manifest "$work/two.toml" rings 5 2 4 'ring_order = "rank"'
for r in 1 3; do
    expect "2 nodes, $r ring(s)" 0 "all nodes hold bit-identical parameters" -- \
        "$pangea" launch "$work/two.toml" --set run.dir="$work/two-$r" --set mesh.rings=$r
done
expect_equal "3 rings end bit-identical to 1 (two nodes, fp32)" \
    "$(json_field "$work/two-1/summary/node-0.json" params_hash)" "$(json_field "$work/two-3/summary/node-0.json" params_hash)"
expect "... and said it ran 3 rings" 0 "the outer all-reduce runs 3 rings at once" -- cat "$work/two-3/logs/node-1.log"

tiny_run_manifest "$work/three.toml" rings 6 3 40 'ring_order = "rank"
heartbeat_ms = 300
timeout_ms = 3000
rings = 2
[compress]
plugin = "int8"'
expect "3 nodes, int8, 2 rings" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch "$work/three.toml" --set run.dir="$work/three" --set diloco.outer_steps=4

# A node killed mid-run: the launcher's own coordinator, nodes started by hand.
address=127.0.0.1:$((20000 + RANDOM % 12000))
"$pangea" coordinator "$work/three.toml" --run-id 3 --listen "$address" >"$work/coordinator.log" 2>&1 &
declare -A pids
for i in 0 1 2; do
    "$pangea" run "$work/three.toml" --node-id $i --run-id 3 --set run.dir="$work/kill" \
        --set mesh.coordinator="$address" >"$work/node-$i.log" 2>&1 &
    pids[$i]=$!
done
wait_for 120 bash -c "(( \$(grep -c outer_step '$work/kill/metrics/node-2.jsonl' 2>/dev/null) >= 3 ))"
kill -9 "${pids[2]}"
for i in 0 1; do
    wait_exit 120 "${pids[$i]}"; rc=$?
    expect_rc "node $i finishes without node 2" 0 -- test "$rc" = 0
done
expect "... which the run dropped" 0 "dropped node 2" -- cat "$work/coordinator.log"
expect_equal "nodes 0 and 1 end bit-identical" "$(json_field "$work/kill/summary/node-0.json" params_hash)" \
    "$(json_field "$work/kill/summary/node-1.json" params_hash)"

expect "a node of another [mesh] rings is refused, saying why" 1 \
    "it all-reduces over [mesh] rings = 1, the run over 2: every node of a run needs the same (the default, 0, is one per worker of the node: with nodes of different [node] workers, set it)" -- \
    "$pangea" run "$work/three.toml" --node-id 0 --run-id 3 --set run.dir="$work/odd" \
    --set mesh.coordinator="$address" --set mesh.rings=1 --set mesh.coordinator_wait_ms=1000
[[ $expect_failures == 0 ]] || tail -n 8 "$work"/*.log
expect_summary
