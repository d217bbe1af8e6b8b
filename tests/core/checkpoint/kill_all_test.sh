#!/usr/bin/env bash
# Resuming after losing every node, as a user would (issue #20): three nodes, either membership
# backend (builtin: a `pangea coordinator` that outlives the nodes; etcd: a real etcd, the
# coordinator elected among the nodes), a checkpoint every 2 outer steps, all three SIGKILLed
# mid-run. The kill leaves the nodes' parts uneven: node 1 finished its part of the newest step,
# nodes 0 and 2 did not (their headers go, as a kill before the header leaves it), and the
# membership record is ahead of every complete checkpoint. Then:
#   - a node started without --resume refuses, naming --resume latest and --fresh; the storage
#     is unchanged;
#   - `--resume latest` on every node resumes the run from its newest complete step, whatever
#     each node's own progress, and the run ends bit-identical to one that never stopped;
#   - each checkpoint holds the shared state once for the run, split in three (the store's listing);
#   - the other way back, node 1 resumed and nodes 0 and 2 started with --join (min_members = 2):
#     the member keeps its state for the joiners, who recover it live, and the run finishes
#     (before, each waited on the other for good).
#   kill_all_test.sh <pangea binary> [builtin|etcd]
set -uo pipefail
pangea=$1 backend=${2:-builtin}
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/../../lib/expect.sh"
source "$here/../../lib/tiny_run.sh"
if [[ $backend == etcd ]] && ! command -v etcd >/dev/null; then
    echo "skipped: etcd is not installed (apt-get install etcd-server)"
    exit 77
fi
work=$(mktemp -d)
trap 'pkill -9 -f -- "$work" 2>/dev/null; rm -rf "$work"' EXIT

tiny_run_manifest "$work/run.toml" killall 11 3 12 'ring_order = "rank"
heartbeat_ms = 300
timeout_ms = 3000
min_members = 2
[checkpoint]
interval = 2'
port() { echo $((20000 + RANDOM % 12000)); }  # below the ephemeral range

# The reference: the same run, never stopped.
expect "three nodes, uninterrupted" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch "$work/run.toml" --set run.dir="$work/reference"
want=$(json_field "$work/reference/summary/node-0.json" params_hash)

membership=()
if [[ $backend == etcd ]]; then
    for attempt in 1 2 3; do  # (a random port may be taken)
        client=$(port) peer=$(port)
        etcd --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$client" \
            --advertise-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
            >"$work/etcd.log" 2>&1 &
        etcd_pid=$!
        wait_for 20 grep -q "serving insecure client requests on 127.0.0.1:$client" "$work/etcd.log" && break
        kill -9 "$etcd_pid" 2>/dev/null; wait "$etcd_pid" 2>/dev/null
        tail -3 "$work/etcd.log"
        [[ $attempt == 3 ]] && { echo "FAIL: etcd did not start"; exit 1; }
    done
    membership=(--set mesh.backend=etcd --set mesh.etcd="http://127.0.0.1:$client")
fi
# A run (RUN: its directory under $work and its id): its own coordinator with the builtin
# backend, one that outlives the nodes.
start_run() {
    run=$1 run_id=$2
    mkdir -p "$work/$run"
    if [[ $backend == builtin ]]; then
        local address=127.0.0.1:$(port)
        "$pangea" coordinator "$work/run.toml" --run-id "$run_id" --listen "$address" >"$work/$run/coordinator.log" 2>&1 &
        membership=(--set mesh.coordinator="$address")
    fi
    checkpoints=$work/$run/checkpoints/killall
}
declare -A pids
start_node() {  # node id, more arguments
    local i=$1; shift
    "$pangea" run "$work/run.toml" --node-id "$i" --run-id "$run_id" --set run.dir="$work/$run" "${membership[@]}" "$@" \
        >>"$work/$run/node-$i.log" 2>&1 &
    pids[$i]=$!
}
# Waits (bounded) for the nodes; fails unless every one exits 0.
wait_nodes() {
    local rc=0 i
    for i in "$@"; do
        for _ in $(seq 1 3000); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
        kill -0 "${pids[$i]}" 2>/dev/null && { echo "node $i still running after 300 s"; kill -9 "${pids[$i]}"; }
        wait "${pids[$i]}" || rc=1
    done
    [[ $rc == 0 ]] || tail -n 4 "$work/$run"/*.log
    return $rc
}
# Trains until a checkpoint of step 4 or later is complete, then SIGKILLs every node. Nodes 0
# and 2 are then made to have died before their headers of that step: it is incomplete, `latest`
# names the step before (as it would have), and the run's record is ahead of it.
train_and_kill_all() {
    for i in 0 1 2; do start_node "$i"; done
    wait_for 180 bash -c "[[ \$(cat '$checkpoints/latest' 2>/dev/null) > step-00000003 ]]"
    kill -9 "${pids[@]}"
    for i in 0 1 2; do wait "${pids[$i]}" 2>/dev/null; done
    newest=$(cat "$checkpoints/latest")
    newest=$((10#${newest#step-}))
    complete=$((newest - 2))
    rm -f "$checkpoints/$(printf 'step-%08d' "$newest")"/node-{0,2}.json
    printf 'step-%08d\n' "$complete" >"$checkpoints/latest"
    echo "$run: killed at checkpoint $newest; node 1 alone holds its part of it; the newest complete step is $complete"
}

# 1. --resume latest on every node.
start_run resume 5
train_and_kill_all
# (storage/local's .partial/ holds the killed writers' temporary files: any opening removes them.)
store_state() {
    (cd "$work/$run/checkpoints" && find . -path ./.partial -prune -o -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum
}
before=$(store_state)
expect "a node started without --resume refuses, naming the ways on" 1 \
    "starting afresh would overwrite them. Resume the run with --resume latest, or start over with --fresh" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --run-id "$run_id" --set run.dir="$work/$run" "${membership[@]}"
expect_equal "... and nothing in the storage changed" "$before" "$(store_state)"

for i in 0 1 2; do start_node "$i" --resume latest; done
wait_nodes 0 1 2; rc=$?  # (not inside expect_rc: a subshell cannot wait for the nodes)
expect_rc "--resume latest on every node finishes the run" 0 -- test "$rc" = 0
for i in 0 1 2; do
    expect "node $i resumed from the run's newest complete step" 0 \
        "resuming from storage/local killall/$(printf 'step-%08d' "$complete")/ (outer step $complete: the newest the whole run committed" \
        -- cat "$work/$run/node-$i.log"
done
expect "node 1 withdrew its part of the step the run abandoned" 0 "withdrew its parts of the incomplete step(s) $newest" -- \
    cat "$work/$run/node-1.log"
expect "the membership went back to that step" 0 "run carries on from step $complete" -- bash -c "cat '$work/$run'/*.log"
for i in 0 1 2; do
    expect_equal "node $i ends bit-identical to the run that never stopped" "$want" \
        "$(json_field "$work/$run/summary/node-$i.json" params_hash)"
done

final=$checkpoints/step-00000012/shared
expect "the shared state is written once for the run: three pieces of each object" 0 "pieces: 3 3" -- \
    bash -c "echo pieces: \$(ls '$final' | grep -c '^model.safetensors') \$(ls '$final' | grep -c '^outer_optimizer.bin')"
"$pangea" checkpoint export "$work/run.toml" latest -o "$work/export" --set run.dir="$work/$run" >/dev/null
expect_equal "... which add up to one model.safetensors" "$(stat -c %s "$work/export/model.safetensors")" \
    "$(cat "$final"/model.safetensors.* | wc -c)"

# 2. Node 1 resumes, nodes 0 and 2 join (min_members = 2).
start_run join 6
train_and_kill_all
start_node 1 --resume latest
sleep 1
start_node 0 --join
start_node 2 --join
wait_nodes 0 1 2; rc=$?
expect_rc "one node resumed and two joining finish the run" 0 -- test "$rc" = 0
for i in 0 2; do
    expect "node $i recovered the state live from node 1" 0 "recovered the state of outer step $complete from node 1" -- \
        cat "$work/$run/node-$i.log"
done
hashes=$(for i in 0 1 2; do json_field "$work/$run/summary/node-$i.json" params_hash; done | sort -u)
expect_equal "every node ends on the same parameters" 1 "$(echo "$hashes" | grep -c .)"
expect_summary
