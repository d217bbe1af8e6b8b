#!/usr/bin/env bash
# `pangea launch` with real node processes on loopback: runs are reproducible, every node holds
# bit-identical parameters after every outer step, the loss falls, int8 ends within 2% of fp32,
# a SIGKILLed node is named and the others finish without it, and Ctrl-C stops everything.
#   launch_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT

cat >"$work/run.toml" <<'TOML'
[run]
seed = 3
[model]
preset = "tiny"
layers = 2
[data]
seq_len = 32
eval_sequences = 16
[train]
lr = 0.003
micro_batch = 4
warmup_steps = 5
threads = 1
[diloco]
inner_steps = 5
outer_steps = 6
[mesh]
ring_order = "rank"
[compress]
plugin = "none"
TOML

expect "two nodes train and agree" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch -n 2 "$work/run.toml" --set run.dir="$work/a"
expect "the same manifest and seed again" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch -n 2 "$work/run.toml" --set run.dir="$work/b"
expect_equal "the second run ends with bit-identical parameters" \
    "$(json_field "$work/a/summary/node-0.json" params_hash)" "$(json_field "$work/b/summary/node-0.json" params_hash)"
expect_rc "every outer step is in the metrics" 0 -- test "$(wc -l <"$work/a/metrics/node-1.jsonl")" -eq 6
expect_equal "after every outer step both nodes hold the same parameters" \
    "$(grep -o '"params_hash":"[0-9a-f]*"' "$work/a/metrics/node-0.jsonl")" \
    "$(grep -o '"params_hash":"[0-9a-f]*"' "$work/a/metrics/node-1.jsonl")"
expect "metrics carry all-reduce time and bytes and utilization" 0 '"allreduce_bytes_sent":' -- cat "$work/a/metrics/node-0.jsonl"

# Four nodes, fp32 and int8 pseudo-gradients.
expect "four nodes, uncompressed" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch -n 4 "$work/run.toml" --set run.dir="$work/fp32"
expect "four nodes, int8" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch -n 4 "$work/run.toml" --set run.dir="$work/int8" --set compress.plugin=int8
first=$(json_field "$work/fp32/metrics/node-0.jsonl" eval_loss)
fp32=$(json_field "$work/fp32/summary/node-0.json" final_eval_loss)
int8=$(json_field "$work/int8/summary/node-0.json" final_eval_loss)
expect_rc "the loss falls (eval $first after one outer step, $fp32 at the end)" 0 \
    -- awk -v a="$first" -v b="$fp32" 'BEGIN { exit !(b < 0.9 * a) }'
expect_rc "int8 ends within 2% of fp32 ($int8 vs $fp32)" 0 \
    -- awk -v a="$fp32" -v b="$int8" 'BEGIN { d = (b - a) / a; if (d < 0) d = -d; exit !(d < 0.02) }'
expect_rc "int8 sends about a quarter of the bytes" 0 -- awk -v a="$(json_field "$work/fp32/summary/node-0.json" bytes_sent)" \
    -v b="$(json_field "$work/int8/summary/node-0.json" bytes_sent)" 'BEGIN { exit !(b < 0.3 * a) }'

# A node killed with SIGKILL mid-run: the launcher names it, the others finish without it (the
# elastic mesh drops it), and the launch still exits 1.
"$pangea" launch -n 3 "$work/run.toml" --set run.dir="$work/kill" --set diloco.outer_steps=4 >"$work/kill.out" 2>&1 &
launcher=$!
for _ in $(seq 1 300); do grep -q '"outer_step":1' "$work/kill/metrics/node-2.jsonl" 2>/dev/null && break; sleep 0.1; done
victim=$(pgrep -f -- "--node-id 2 .*$work/kill" | head -1)
expect_rc "the node to kill is running" 0 -- test -n "$victim"
kill -9 "$victim"
wait_exit 120 "$launcher"; code=$?
expect_rc "the launch exits 1 when a node was killed" 0 -- test "$code" -eq 1
expect "it names the killed node" 0 "node 2 failed (exit status 137)" -- cat "$work/kill.out"
expect "the others carry on and agree" 0 "the nodes that finished hold bit-identical parameters" -- cat "$work/kill.out"
expect_rc "the survivors finished every outer step" 0 -- test "$(wc -l <"$work/kill/metrics/node-1.jsonl")" -eq 4
expect "the last outer steps had two members" 0 '"members":2' -- tail -1 "$work/kill/metrics/node-0.jsonl"
expect_rc "no node is left running" 1 -- pgrep -f -- "$work/kill"

# Ctrl-C: forwarded to the nodes; the launcher exits 130 and leaves nothing running.
"$pangea" launch -n 2 "$work/run.toml" --set run.dir="$work/int" --set diloco.outer_steps=1000 >"$work/int.out" 2>&1 &
launcher=$!
for _ in $(seq 1 300); do [[ -s "$work/int/status/node-1.json" ]] && break; sleep 0.1; done
kill -INT "$launcher"
wait_exit 30 "$launcher"; code=$?
expect_rc "Ctrl-C ends the launch with 130" 0 -- test "$code" -eq 130
expect "it says it was interrupted" 0 "interrupted" -- cat "$work/int.out"
expect_rc "no node is left running after Ctrl-C" 1 -- pgrep -f -- "$work/int"
expect_summary
