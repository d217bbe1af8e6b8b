#!/usr/bin/env bash
# Resuming after losing every node, as a user would (issue #20): three nodes, either membership
# backend (builtin: a `pangea coordinator` that outlives the nodes; etcd: a real etcd, the
# coordinator elected among the nodes), either storage (local; s3: a real S3-compatible server,
# tests/lib/s3rver.sh), a checkpoint every 2 outer steps, all three SIGKILLed mid-run. The kill leaves the nodes' parts uneven: node 1 finished its part of the newest step,
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
#   kill_all_test.sh <pangea binary> [builtin|etcd] [local|s3]
set -uo pipefail
pangea=$1 backend=${2:-builtin} storage=${3:-local}
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/../../lib/expect.sh"
source "$here/../../lib/tiny_run.sh"
source "$here/../../lib/s3rver.sh"
if [[ $backend == etcd ]] && ! command -v etcd >/dev/null; then
    echo "skipped: etcd is not installed (apt-get install etcd-server)"
    exit 77
fi
[[ $storage == s3 ]] && s3rver_install ""
work=$(mktemp -d)
trap 's3rver_stop; pkill -9 -f -- "$work" 2>/dev/null; rm -rf "$work"' EXIT

# The run's checkpoints, wherever they are: objects under $checkpoints (a directory, or a key
# prefix in the bucket), read, written, removed and listed as the test needs.
bucket=checkpoints
storage_args=()
if [[ $storage == s3 ]]; then
    s3rver_start "$work/s3" "$bucket"
fi
object_get() { if [[ $storage == s3 ]]; then s3_get "$bucket" "$checkpoints/$1"; else cat "$checkpoints/$1"; fi; }
object_put() { if [[ $storage == s3 ]]; then s3_put "$bucket" "$checkpoints/$1"; else cat >"$checkpoints/$1"; fi; }
object_rm() { if [[ $storage == s3 ]]; then s3_rm "$bucket" "$checkpoints/$1"; else rm -f "$checkpoints/$1"; fi; }
object_list() {  # every object under the checkpoints, relative (storage/local's .partial/ aside)
    if [[ $storage == s3 ]]; then
        s3_keys "$bucket" "$checkpoints/" | sed "s|^$checkpoints/||"
    else
        (cd "$checkpoints" 2>/dev/null && find . -path ./.partial -prune -o -type f -print | sed 's|^\./||')
    fi | sort
}

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
    if [[ $storage == s3 ]]; then
        storage_args=(--set storage.plugin=s3 --set storage.endpoint="$S3_ENDPOINT" --set storage.bucket="$bucket"
                      --set storage.prefix="$run/")
        checkpoints=$run/killall
    else
        checkpoints=$work/$run/checkpoints/killall
    fi
}
declare -A pids
start_node() {  # node id, more arguments
    local i=$1; shift
    "$pangea" run "$work/run.toml" --node-id "$i" --run-id "$run_id" --set run.dir="$work/$run" "${membership[@]}" \
        "${storage_args[@]}" "$@" >>"$work/$run/node-$i.log" 2>&1 &
    pids[$i]=$!
}
# Waits (bounded) for the nodes; fails unless every one exits 0.
wait_nodes() {
    local rc=0 i
    for i in "$@"; do
        wait_exit 300 "${pids[$i]}" || rc=1
    done
    [[ $rc == 0 ]] || tail -n 4 "$work/$run"/*.log
    return $rc
}
# Trains until a checkpoint of step 4 or later is complete, then SIGKILLs every node. Nodes 0
# and 2 are then made to have died before their headers of that step: it is incomplete, `latest`
# names the step before (as it would have), and the run's record is ahead of it.
train_and_kill_all() {
    for i in 0 1 2; do start_node "$i"; done
    local deadline=$((SECONDS + 180))
    until [[ $(object_get latest 2>/dev/null) > step-00000003 ]]; do
        if ((SECONDS > deadline)); then
            echo "FAIL: $run: no checkpoint of step 4 or later within 180 s"; tail -n 5 "$work/$run"/*.log; exit 1
        fi
        sleep 0.1
    done
    kill -9 "${pids[@]}"
    for i in 0 1 2; do wait "${pids[$i]}" 2>/dev/null; done
    newest=$(object_get latest)
    newest=$((10#${newest#step-}))
    complete=$((newest - 2))
    object_rm "$(printf 'step-%08d' "$newest")/node-0.json"
    object_rm "$(printf 'step-%08d' "$newest")/node-2.json"
    printf 'step-%08d\n' "$complete" | object_put latest
    echo "$run: killed at checkpoint $newest; node 1 alone holds its part of it; the newest complete step is $complete"
}

# 1. --resume latest on every node.
start_run resume 5
train_and_kill_all
# (storage/local's .partial/ holds the killed writers' temporary files: any opening removes them.)
store_state() {
    object_list | while read -r key; do echo "$key $(object_get "$key" | sha256sum)"; done | sha256sum
}
before=$(store_state)
expect "a node started without --resume refuses, naming the ways on" 1 \
    "starting afresh would overwrite them. Resume the run with --resume latest, or start over with --fresh" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --run-id "$run_id" --set run.dir="$work/$run" "${membership[@]}" "${storage_args[@]}"
expect_equal "... and nothing in the storage changed" "$before" "$(store_state)"

for i in 0 1 2; do start_node "$i" --resume latest; done
wait_nodes 0 1 2; rc=$?  # (not inside expect_rc: a subshell cannot wait for the nodes)
expect_rc "--resume latest on every node finishes the run" 0 -- test "$rc" = 0
for i in 0 1 2; do
    expect "node $i resumed from the run's newest complete step" 0 \
        "resuming from storage/$storage killall/$(printf 'step-%08d' "$complete")/ (outer step $complete: the newest the whole run committed" \
        -- cat "$work/$run/node-$i.log"
done
expect "node 1 withdrew its part of the step the run abandoned" 0 "withdrew its parts of the incomplete step(s) $newest" -- \
    cat "$work/$run/node-1.log"
expect "the membership went back to that step" 0 "run carries on from step $complete" -- bash -c "cat '$work/$run'/*.log"
for i in 0 1 2; do
    expect_equal "node $i ends bit-identical to the run that never stopped" "$want" \
        "$(json_field "$work/$run/summary/node-$i.json" params_hash)"
done

final=$(object_list | grep '^step-00000012/shared/')
expect_equal "the shared state is written once for the run: three pieces of each object (the store's listing)" \
    "3 3" "$(grep -c '/model.safetensors\.' <<<"$final") $(grep -c '/outer_optimizer.bin\.' <<<"$final")"
"$pangea" checkpoint export "$work/run.toml" latest -o "$work/export" --set run.dir="$work/$run" "${storage_args[@]}" >/dev/null
expect_equal "... which add up to one model.safetensors" "$(stat -c %s "$work/export/model.safetensors")" \
    "$(for key in $(grep '/model.safetensors\.' <<<"$final"); do object_get "$key"; done | wc -c)"

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
