#!/usr/bin/env bash
# A node that sends a poisoned pseudo-gradient on purpose: real processes on loopback, a builtin
# coordinator and three nodes, node 2 with an absurd learning rate (10, the most the manifest
# allows, against 0.003: its pseudo-gradient is thousands of times the others'; NaN/Inf
# contributions are covered by tests/core/collective/contribution_check_test.cpp). Before each average the members
# exchange the norms of their contributions (collective/contribution_check.hpp):
#   - every node leaves node 2's contribution out of every outer step and says so in its log
#     and metrics, and the run completes on every node (no crash, no hang);
#   - all three hold bit-identical parameters after every outer step, and the honest nodes'
#     evaluation loss is finite and below the start;
#   - with the check set to NaN/Inf only (outlier_factor = 0), the outsized contribution is let
#     through and the evaluation loss is clearly worse (the factor is what catches it).
#   poisoned_test.sh <pangea binary> <source root>
set -uo pipefail
pangea=$1 root=$2
source "$root/tests/lib/expect.sh"
work=$(mktemp -d)
cleanup() {
    pkill -9 -f -- "$work" 2>/dev/null
    [[ -n ${KEEP:-} ]] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/run.toml" <<'TOML'
[run]
seed = 11
[model]
preset = "tiny"
layers = 2
[data]
seq_len = 32
eval_sequences = 8
[train]
lr = 0.003
micro_batch = 4
warmup_steps = 2
threads = 1
eval_interval = 0
[diloco]
inner_steps = 4
outer_steps = 4
[mesh]
nodes = 3
heartbeat_ms = 500
timeout_ms = 5000
secret_env = "PANGEA_TEST_SECRET"
[compress]
plugin = "int8"
TOML
export PANGEA_TEST_SECRET=poisoned-test-secret

# run_three <dir> <outlier factor> <poisoned lr>: coordinator + nodes 0..2; waits (bounded).
run_three() {
    local dir=$1 factor=$2 lr=$3 port
    port=$((20000 + RANDOM % 12000))  # below the ephemeral range (32768 and up)
    mkdir -p "$dir"
    "$pangea" coordinator "$work/run.toml" --run-id 7 --listen "127.0.0.1:$port" >"$dir/coordinator.log" 2>&1 &
    local coordinator=$! pids=()
    for i in 0 1 2; do
        local extra=()
        [[ $i == 2 ]] && extra=(--set train.lr="$lr")
        "$pangea" run "$work/run.toml" --node-id "$i" --run-id 7 --set run.dir="$dir/run" \
            --set mesh.coordinator="127.0.0.1:$port" --set diloco.outlier_factor="$factor" "${extra[@]}" \
            >"$dir/node-$i.log" 2>&1 &
        pids+=($!)
    done
    local rc=0
    for pid in "${pids[@]}"; do
        wait_exit 180 "$pid" || rc=1  # bounded: a hang is a failure, not a stuck CI job
    done
    kill "$coordinator" 2>/dev/null
    wait "$coordinator" 2>/dev/null
    return $rc
}

steps_hashes() { grep -o '"outer_step":[0-9]*\|"params_hash":"[0-9a-f]*"' "$1" | paste -sd' '; }

run_three "$work/guarded" 10 10
for i in 0 1 2; do
    expect "node $i completed" 0 "done: eval loss" -- cat "$work/guarded/node-$i.log"
done
expect "node 0 says it left node 2's contribution out" 0 "leaves out node 2's contribution" -- cat "$work/guarded/node-0.log"
expect "node 2 says its own contribution was left out" 0 "(this node's own)" -- cat "$work/guarded/node-2.log"
expect "node 1's metrics name node 2 as excluded at every outer step" 0 "4" -- \
    bash -c "grep -c '\"excluded_nodes\":\[2\]' '$work/guarded/run/metrics/node-1.jsonl'"
expect "node 0's summary counts 4 excluded contributions" 0 "4" -- \
    json_field "$work/guarded/run/summary/node-0.json" excluded_contributions
h0=$(steps_hashes "$work/guarded/run/metrics/node-0.jsonl")
expect "node 0's metrics hold 4 outer steps with their parameter hashes" 0 '"outer_step":4 "params_hash"' -- echo "$h0"
expect_equal "nodes 0 and 1 hold bit-identical parameters after every outer step" \
    "$h0" "$(steps_hashes "$work/guarded/run/metrics/node-1.jsonl")"
expect_equal "node 2 too (it applies the same average)" \
    "$h0" "$(steps_hashes "$work/guarded/run/metrics/node-2.jsonl")"
loss=$(json_field "$work/guarded/run/summary/node-0.json" final_eval_loss)
expect_rc "the honest nodes' evaluation loss ($loss) is finite and below the start (ln 257 = 5.55)" 0 -- \
    awk -v l="$loss" 'BEGIN { exit !(l == l + 0 && l < 5.55) }'

# The same poisoned node with the NaN/Inf check only: an outsized but finite contribution passes.
run_three "$work/unguarded" 0 10
expect "with outlier_factor = 0 the run completes too" 0 "done: eval loss" -- cat "$work/unguarded/node-0.log"
expect_rc "with outlier_factor = 0 a finite outsized contribution (lr 10) is averaged in" 1 -- \
    grep -q "leaves out" "$work/unguarded/node-0.log"
unguarded=$(json_field "$work/unguarded/run/summary/node-0.json" final_eval_loss)
expect_rc "... and it hurts: evaluation loss $unguarded without the check, $loss with it" 0 -- \
    awk -v a="$unguarded" -v b="$loss" 'BEGIN { exit !(a != a + 0 || a > b + 0.1) }'
expect_summary
