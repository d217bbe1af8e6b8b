#!/usr/bin/env bash
# A node of several workers ([node] workers, issue #20): W processes share one replica of the
# model, sharded among them (ZeRO-3), split each micro-batch and sum their gradients, and the
# leader alone talks to the run.
#   - 2 nodes x 2 workers hold bit-identical parameters after every outer step, and are within
#     the stated tolerance of 2 nodes x 1 worker with the same global batch (docs/workers.md:
#     the sums differ in float order only);
#   - a node of 2 workers and a node of 3 train together; SIGKILL one worker of the node of 3
#     mid-run: its node leaves the run naming the worker, the other retries the step without it
#     and waits (min_members = 2); the node restarted with --join recovers live, and the run
#     finishes with both nodes bit-identical; a worker stopped (SIGSTOP) mid all-reduce takes its
#     node out of the run after the rings' stall timeout, and the other node finishes;
#   - checkpoints do not depend on W: a 2 x 2 run resumes bit-identically, and with 1 worker;
#   - with 4 workers, each worker peaks at most 0.4x the memory of one worker (2 nodes, so that
#     the workers' rings run too).
#   workers_test.sh <pangea binary> <test fixtures directory> [python3: any, the standard library is enough]
set -uo pipefail
pangea=$1 fixtures=$2 python=${3:-python3}
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/../../lib/expect.sh"
source "$here/../../lib/tiny_run.sh"
work=$(mktemp -d)
trap 'pkill -9 -f -- "$work" 2>/dev/null; rm -rf "$work"' EXIT

# 1. 2 x 2 against 2 x 1: 8 outer steps, checkpoints every 2; step 2 exported from each.
tiny_run_manifest "$work/run.toml" workers 5 2 8 'ring_order = "rank"
[checkpoint]
interval = 2
keep = 4'
for w in 1 2; do
    expect "2 nodes x $w worker(s)" 0 "all nodes hold bit-identical parameters" -- \
        "$pangea" launch "$work/run.toml" --set run.dir="$work/w$w" --set node.workers=$w
    "$pangea" checkpoint export "$work/run.toml" 2 -o "$work/export-$w" --set run.dir="$work/w$w" >/dev/null
done
expect "each node of 2 started its second worker" 0 "node-1: started workers 1..1" -- cat "$work/w2/logs/node-1.log"
expect "... sharded the model among them" 0 "sharded over 2 workers (ZeRO-3)" -- cat "$work/w2/logs/node-1.log"
expect "... and reports each worker's peak memory" 0 '"workers":2,"worker_peak_rss_bytes":[' -- \
    cat "$work/w2/summary/node-1.json"
expect "... both of them, above zero" 0 "worker_peak_rss_bytes" -- \
    grep -oE '"worker_peak_rss_bytes":\[[1-9][0-9]*,[1-9][0-9]*\]' "$work/w2/summary/node-1.json"
hashes() { grep -o '"params_hash":"[0-9a-f]*"' "$1"; }
expect_equal "2 x 2: both nodes hold the same parameters after every outer step" \
    "$(hashes "$work/w2/metrics/node-0.jsonl")" "$(hashes "$work/w2/metrics/node-1.jsonl")"
expect_equal "... eight of them" 8 "$(hashes "$work/w2/metrics/node-0.jsonl" | sort -u | wc -l)"
# The tolerance (docs/workers.md): after 2 outer steps of 3 AdamW inner steps each, no parameter
# more than 2e-5 away (measured: 6.1e-6). (Later, any rounding difference grows, as between two
# builds of one worker: 1e-3 after 8 outer steps.)
expect "2 x 2 is within 2e-5 of 2 x 1 after 2 outer steps, parameter by parameter" 0 "within tolerance" -- \
    "$python" "$here/../../lib/compare_safetensors.py" "$work/export-1/model.safetensors" \
    "$work/export-2/model.safetensors" 2e-5

# Checkpoints do not depend on W (the outer optimizer's state goes whole through its range state,
# the inner one's layout is the same for any W): the 2 x 2 run cut back to step 4 resumes with 2
# workers bit-identically, and with 1 worker to the end.
for w in 2 1; do
    cp -r "$work/w2" "$work/resume-$w"
    checkpoints=$work/resume-$w/checkpoints/workers
    rm -rf "$checkpoints/step-00000006" "$checkpoints/step-00000008" "$work/resume-$w/summary"
    echo step-00000004 >"$checkpoints/latest"
    expect "the 2 x 2 run resumes from step 4 with $w worker(s) a node" 0 "all nodes hold bit-identical parameters" -- \
        "$pangea" launch "$work/run.toml" --set run.dir="$work/resume-$w" --set node.workers=$w --resume latest
    expect "... from its checkpoint" 0 "resuming from storage/local workers/step-00000004/" -- cat "$work/resume-$w/logs/node-0.log"
done
expect_equal "... and with 2 workers ends bit-identical to the run that never stopped" \
    "$(json_field "$work/w2/summary/node-0.json" params_hash)" "$(json_field "$work/resume-2/summary/node-0.json" params_hash)"

# Settings that cannot work are refused before anything starts, naming the manifest line.
expect "a micro-batch that does not split evenly is refused" 1 \
    "[train] micro_batch = 4 does not split evenly among the workers" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set node.workers=3 --set run.dir="$work/refused"
expect "an outer optimizer that cannot split its state by range (built for ABI 1.0) is refused" 1 \
    "optim/old-sgd cannot. Run one worker per node, or use optim/nesterov" -- \
    env PANGEA_PLUGIN_PATH="$fixtures/old" "$pangea" run "$work/run.toml" --node-id 0 --set mesh.nodes=1 \
    --set node.workers=2 --set optim.plugin=old-sgd --set run.dir="$work/refused"
expect "a GPU of its own for each worker, or none" 1 \
    "takes [train] device = \"cuda\" (worker k on GPU k), not \"cuda:1\"" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set node.workers=2 --set train.device=cuda:1 --set run.dir="$work/refused"

# 2. A node of 2 and a node of 3 (6 sequences a micro-batch split either way, 6 rings: worker k
# of the node of 2 meets workers of the node of 3 on rings 3k..3k+2); a worker killed mid
# all-reduce: node 1's compressors stall 20 s in an early outer step (compress/faulty: a slow
# injected failure of encode), and its worker 2 is killed while they do.
tiny_run_manifest "$work/mixed.toml" mixed 9 2 60 'ring_order = "rank"
rings = 6
heartbeat_ms = 300
timeout_ms = 3000
min_members = 2
[compress]
plugin = "faulty"
inner = "int8"
fail = "encode"
node = 1
after = 6
delay_ms = 20000'
sed -i 's/^micro_batch = 4$/micro_batch = 6/' "$work/mixed.toml"
address=127.0.0.1:$((20000 + RANDOM % 12000))
"$pangea" coordinator "$work/mixed.toml" --run-id 7 --listen "$address" >"$work/coordinator.log" 2>&1 &
declare -A pids
start_node() {  # node id, workers, more arguments
    local i=$1 w=$2; shift 2
    "$pangea" run "$work/mixed.toml" --node-id "$i" --run-id 7 --set run.dir="$work/mixed" \
        --set mesh.coordinator="$address" --set node.workers="$w" "$@" >>"$work/node-$i.log" 2>&1 &
    pids[$i]=$!
}
outer_step_of() { grep -o '"outer_step":[0-9]*' "$work/mixed/metrics/node-$1.jsonl" 2>/dev/null | tail -1 | cut -d: -f2; }
start_node 0 2
start_node 1 3
expect_rc "node 1's rings stall mid all-reduce" 0 -- wait_for 120 grep -q "faulty: injected failure of encode" "$work/node-1.log"
stalled_at=$(outer_step_of 1)
worker=$(pgrep -f -- "$work/mixed.toml --node-id 1 --worker 2 ")  # (this test's only)
expect_rc "node 1 runs its third worker as a process of its own" 0 -- test -n "$worker"
kill -9 $worker
wait_exit 60 "${pids[1]}"; rc=$?  # (its other workers wake from the stall first)
expect_rc "node 1 stops when its worker dies" 1 -- test "$rc" = 0
expect "... saying which worker" 0 "node-1: worker 2 is gone" -- cat "$work/node-1.log"
expect "node 0 goes on without node 1" 0 "dropped node 1" -- bash -c "cat '$work/node-0.log' '$work/coordinator.log'"
kill -0 "${pids[0]}" 2>/dev/null
expect_rc "... and waits for it (min_members = 2)" 0 -- test $? = 0
expect_equal "... having committed nothing since node 1 stalled" "$stalled_at" "$(outer_step_of 0)"
start_node 1 3 --join --set compress.fail=  # (no fault this time)
for i in 0 1; do
    wait_exit 180 "${pids[$i]}"; rc=$?
    expect_rc "node $i finishes the run" 0 -- test "$rc" = 0
done
expect "node 1 (3 workers) came back by live recovery" 0 "recovered the state of outer step" -- cat "$work/node-1.log"
expect_equal "both nodes end bit-identical" "$(json_field "$work/mixed/summary/node-0.json" params_hash)" \
    "$(json_field "$work/mixed/summary/node-1.json" params_hash)"
expect_equal "... after the last outer step" 60 "$(outer_step_of 1)"

# 2b. A worker stopped (SIGSTOP) mid all-reduce, not dead: it stops saying it is alive, and past
# the rings' stall timeout (30 s) its leader gives it up and the node leaves the run, instead of
# the run waiting for it forever; the other node goes on alone.
tiny_run_manifest "$work/stop.toml" stop 9 2 30 'ring_order = "rank"
heartbeat_ms = 300
timeout_ms = 3000
[compress]
plugin = "faulty"
inner = "int8"
fail = "encode"
node = 1
after = 6
delay_ms = 3000'
address=127.0.0.1:$((20000 + RANDOM % 12000))
"$pangea" coordinator "$work/stop.toml" --run-id 8 --listen "$address" >"$work/stop-coordinator.log" 2>&1 &
for i in 0 1; do
    "$pangea" run "$work/stop.toml" --node-id "$i" --run-id 8 --set run.dir="$work/stop" \
        --set mesh.coordinator="$address" --set node.workers=2 >"$work/stop-node-$i.log" 2>&1 &
    pids[$i]=$!
done
expect_rc "node 1's rings stall mid all-reduce" 0 -- wait_for 120 grep -q "faulty: injected failure of encode" "$work/stop-node-1.log"
stopped=$(pgrep -f -- "$work/stop.toml --node-id 1 --worker 1 ")
kill -STOP $stopped
wait_exit 90 "${pids[1]}"; rc=$?
expect_rc "node 1 leaves the run when its worker goes silent" 1 -- test "$rc" = 0
expect "... saying so" 0 "the node leaves the run" -- cat "$work/stop-node-1.log"
wait_exit 120 "${pids[0]}"; rc=$?
expect_rc "node 0 finishes the run alone" 0 -- test "$rc" = 0
expect_equal "... all 30 outer steps" 30 "$(grep -o '"outer_step":[0-9]*' "$work/stop/metrics/node-0.jsonl" | tail -1 | cut -d: -f2)"
kill -9 $stopped

# 3. Memory per worker: the small preset with 16 layers (50.6M parameters), 2 nodes (so that the
# rings run: 4 a node with 4 workers, one in each), one inner step a round, 2 rounds, W = 1
# against W = 4. Each worker holds 1/4 of the state (the outer state's too) plus one unit and its
# ring's buffers: at most 0.4x.
tiny_run_manifest "$work/memory.toml" memory 3 2 2 ''
sed -i 's/^preset = "tiny"$/preset = "small"/; s/^layers = 1$/layers = 16/; s/^inner_steps = 3$/inner_steps = 1/' "$work/memory.toml"
for w in 1 4; do
    "$pangea" launch "$work/memory.toml" --set run.dir="$work/memory-$w" --set node.workers=$w >"$work/memory-$w.log" 2>&1
done
for i in 0 1; do
    one=$(json_field "$work/memory-1/summary/node-$i.json" peak_rss_bytes)
    peaks=$(grep -o '"worker_peak_rss_bytes":\[[0-9,]*\]' "$work/memory-4/summary/node-$i.json" | grep -o '[0-9][0-9,]*' | tr , ' ')
    echo "node $i: peak resident memory: 1 worker $((one >> 20)) MiB; 4 workers $(for p in $peaks; do printf '%s ' $((p >> 20)); done)MiB"
    expect_equal "node $i's 4 workers report 4 peaks" 4 "$(wc -w <<<"$peaks")"
    k=0
    for p in $peaks; do
        expect "node $i's worker $k of 4 peaks at most 0.4x one worker's" 0 "within" -- \
            awk -v p="$p" -v one="$one" 'BEGIN { r = p / one; printf "%.2f ", r; if (r <= 0.4) print "within"; else exit 1 }'
        k=$((k + 1))
    done
done

[[ $expect_failures == 0 ]] || tail -n 8 "$work"/*.log
expect_summary
