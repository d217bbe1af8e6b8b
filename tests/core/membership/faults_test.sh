#!/usr/bin/env bash
# Fault injection with real processes and real signals over emulated links (bench/wan.sh:
# network namespaces, 16 Mbit/s each way), with either membership backend: the builtin
# coordinator, or a real etcd (started here, with a temporary data directory) through which the
# nodes elect the node that coordinates. One run goes through:
#   1. a node SIGKILLed in the middle of an all-reduce: the others retry that step without it
#   2. a node started mid-run with --join: it recovers the state live and agrees with the others
#   3. a node SIGSTOPped past the timeout, then SIGCONTed: it is dropped, notices, and recovers
#   4. the recovery source SIGKILLed halfway: the joiner completes from another member
#   5. the coordinator SIGKILLed and restarted (etcd: the node hosting it SIGKILLed, another
#      elected, the node restarted with --join): training goes on
#   6. a stranger without the run's secret tries to join as node 3: refused, the run unaffected
# and after every outer step all members hold bit-identical parameters. Every wait is bounded
# and prints who was waiting on what. Needs root (network namespaces); skipped otherwise.
# The nodes use transport/TRANSPORT (default tcp): the scenarios hold for every transport; and
# compress/COMPRESS (default none) with [mesh] aggregation = AGGREGATION (default codec): with a
# lossy codec each node keeps its error-feedback residual through all of it (a node dropped and
# recovered keeps its own). With `overlap` the nodes sync 2 fragments in turn, each all-reduce
# running while the next round trains ([diloco] fragments, overlap): joiners and dropped nodes
# recover all the same.
#   faults_test.sh <pangea binary> <source root> [builtin|etcd] [TRANSPORT] [COMPRESS] [AGGREGATION]
#                  [blocking|overlap]
set -uo pipefail
pangea=$1 root=$2 backend=${3:-builtin} transport=${4:-tcp} compress=${5:-none} aggregation=${6:-codec}
schedule=${7:-blocking}
source "$root/tests/lib/netns.sh"
require_network_namespaces
if [[ $backend == etcd ]] && ! command -v etcd >/dev/null; then
    echo "skipped: etcd is not installed (apt-get install etcd-server)"
    exit 77
fi
source "$root/tests/lib/expect.sh"
work=$(mktemp -d)
cleanup() {
    pkill -9 -f -- "$work" 2>/dev/null
    "$root/bench/wan.sh" down 6 >/dev/null 2>&1
    [[ -n ${KEEP:-} ]] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
"$root/bench/wan.sh" up 6 --rate 16mbit >/dev/null || { echo "FAIL: bench/wan.sh up 6"; exit 1; }

cat >"$work/run.toml" <<TOML
[run]
seed = 5
[model]
preset = "tiny"
layers = 2
[data]
seq_len = 32
eval_sequences = 8
[train]
lr = 0.003
micro_batch = 4
warmup_steps = 5
threads = 1
eval_interval = 0
[diloco]
inner_steps = 2
$([[ $schedule == overlap ]] && printf 'outer_steps = 120\nfragments = 2\noverlap = true' || echo 'outer_steps = 40')
[mesh]
nodes = 5
heartbeat_ms = 500
timeout_ms = 2000
min_members = 2
secret_env = "PANGEA_TEST_SECRET"
aggregation = "$aggregation"
[compress]
plugin = "$compress"
TOML

export PANGEA_TEST_SECRET=faults-test-secret
declare -A pids
coordinator_address=10.77.0.6:7070 etcd_endpoint=http://10.77.0.6:2379
if [[ $backend == etcd ]]; then
    membership=(--set mesh.backend=etcd --set mesh.etcd="$etcd_endpoint")
    ip netns exec pangea-n6 etcd --data-dir "$work/etcd" --listen-client-urls "$etcd_endpoint" \
        --advertise-client-urls "$etcd_endpoint" --listen-peer-urls http://10.77.0.6:2380 >"$work/etcd.log" 2>&1 &
    for _ in $(seq 1 100); do
        ip netns exec pangea-n6 curl -sf "$etcd_endpoint/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
else
    membership=(--set mesh.coordinator="$coordinator_address")
fi
start_coordinator() {
    ip netns exec pangea-n6 "$pangea" coordinator "$work/run.toml" --run-id 99 --listen "$coordinator_address" \
        >>"$work/coordinator.log" 2>&1 &
    coordinator=$!
}
start_node() {  # node id, extra arguments
    local i=$1; shift
    ip netns exec "pangea-n$((i + 1))" "$pangea" run "$work/run.toml" --node-id "$i" --run-id 99 \
        --set run.dir="$work/run" --set mesh.address="10.77.0.$((i + 1)):0" --set transport.plugin="$transport" \
        "${membership[@]}" "$@" \
        >>"$work/node-$i.log" 2>&1 &
    pids[$i]=$!
}
# What the coordinator logged: its own file, or with etcd the log of whichever node hosted it.
coordinator_log() {
    local logs=("$work"/node-*.log)
    [[ -f $work/coordinator.log ]] && logs+=("$work/coordinator.log")
    grep -h '\[coordinator\]' "${logs[@]}"
}
coordinator_says() { coordinator_log | grep -q -- "$1"; }
diagnose() {
    echo "    coordinator: $(coordinator_log | tail -3 | tr '\n' '|')"
    for log in "$work"/node-*.log; do echo "    $(basename "$log"): $(tail -2 "$log" | tr '\n' '|')"; done
}
# wait_until <seconds> <what> -- command: polls every 50 ms; on timeout says who waited on what.
wait_until() {
    local seconds=$1 what=$2; shift 3
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            echo "FAIL: waited ${seconds} s for: $what"
            diagnose
            expect_failures=$((expect_failures + 1))
            return 1
        fi
        sleep 0.05
    done
    echo "ok: $what"
    expect_passes=$((expect_passes + 1))
}
committed() { grep -q "\"outer_step\":$2," "$work/run/metrics/node-$1.jsonl"; }
last_step() { tail -1 "$work/run/metrics/node-$1.jsonl" 2>/dev/null | grep -o '"outer_step":[0-9]*' | cut -d: -f2; }

if [[ $backend == etcd ]]; then
    # Node 1 first, so that it hosts the coordinator until scenario 5 kills it.
    start_node 1
    wait_until 30 "node 1 is elected to coordinate" -- grep -q "node 1 was elected" "$work/node-1.log"
    for i in 0 2 3; do start_node "$i"; done
else
    start_coordinator
    for i in 0 1 2 3; do start_node "$i"; done
fi
wait_until 120 "four nodes commit outer step 2" -- committed 0 2

# 1. SIGKILL node 3 as soon as the coordinator starts an epoch with it: the all-reduce of 1.8 MB
#    takes over a second on these links, so node 3 dies in the middle of it.
epochs=$(coordinator_log | grep -c "\[coordinator\] epoch")
new_epoch() { [[ $(coordinator_log | grep -c "\[coordinator\] epoch") -gt $epochs ]]; }
wait_until 60 "a new epoch with all four nodes starts" -- new_epoch
kill -9 "${pids[3]}"
# (Whichever notices first says why: the coordinator, node 3's connection closing; or a survivor,
# its transport's receive from node 3 failing, as UCX's endpoint timeout can, on a loaded machine.)
retried_without_3() { coordinator_log | grep -qE "is retried: (node 3 dropped|node [0-2] reported a failed all-reduce)"; }
wait_until 30 "the epoch node 3 died in is retried without it" -- retried_without_3
step=$(last_step 0)
wait_until 60 "the survivors commit the next outer step with three members" -- \
    bash -c "tail -1 '$work/run/metrics/node-0.jsonl' | grep -q '\"members\":3' && [[ \$(tail -1 '$work/run/metrics/node-0.jsonl' | grep -o '\"outer_step\":[0-9]*' | cut -d: -f2) -gt $step ]]"

# 6. A stranger with the wrong secret claims the id of node 3, which died (a live node's id is
#    refused earlier with etcd, where registrations keep ids unique: there it waits for node 3's
#    registration to expire with its lease, which on a loaded machine can take longer than the
#    few seconds a node waits for an id to come free).
if [[ $backend == etcd ]]; then
    node_3_unregistered() {  # (`pangea etcd show` fails while etcd cannot be read: not yet)
        local registered
        registered=$(ip netns exec pangea-n6 "$pangea" etcd show "$work/run.toml" --run-id 99 "${membership[@]}") &&
            ! grep -q '^  node 3 ' <<<"$registered"
    }
    wait_until 60 "node 3's registration in etcd expires" -- node_3_unregistered
fi
step=$(last_step 0)
expect "a node without the secret is refused" 1 "refused node 3: authentication failed" -- \
    env PANGEA_TEST_SECRET=a-guess timeout 60 ip netns exec pangea-n5 "$pangea" run "$work/run.toml" --node-id 3 \
    --run-id 99 --set run.dir="$work/stranger" --set mesh.address=10.77.0.5:0 "${membership[@]}"
expect "the coordinator logs the refusal" 0 "refused a connection claiming to be node 3: authentication failed" -- \
    coordinator_log
wait_until 60 "the run goes on with the same three members" -- \
    bash -c "tail -1 '$work/run/metrics/node-1.jsonl' | grep -q '\"members\":3' && [[ \$(tail -1 '$work/run/metrics/node-1.jsonl' | grep -o '\"outer_step\":[0-9]*' | cut -d: -f2) -gt $step ]]"

# 2. A node joins mid-run and recovers live.
start_node 4 --join
wait_until 120 "node 4 recovers the state live" -- grep -q "recovered the state of outer step" "$work/node-4.log"
wait_until 60 "node 4 takes part in an outer step" -- grep -q '"members":4' "$work/run/metrics/node-4.jsonl"

# 3. SIGSTOP node 2 past the timeout, then SIGCONT.
kill -STOP "${pids[2]}"
wait_until 30 "the coordinator drops the stopped node" -- coordinator_says "dropped node 2: no heartbeat"
sleep 1
kill -CONT "${pids[2]}"
wait_until 120 "node 2 notices it is stale and recovers" -- \
    bash -c "grep -q 'was dropped from the run' '$work/node-2.log' && grep -q 'recovered the state' '$work/node-2.log'"

# 4. Node 3 comes back; its recovery source (node 0, the first member) is killed halfway.
start_node 3 --join
wait_until 120 "node 0 starts serving the state to node 3" -- grep -q "serving the state of step .* to node 3" "$work/node-0.log"
sleep 1
kill -9 "${pids[0]}"
wait_until 120 "node 3 completes the recovery from another member" -- \
    bash -c "grep -q 'fetching the state from node 0 failed' '$work/node-3.log' && grep -q 'recovered the state of outer step .* from node 0, ' '$work/node-3.log'"

# 5. Kill the coordinator and start it again at the same address; with etcd, kill the node that
#    hosts it: another node is elected and carries on; the killed node comes back with --join.
step=$(last_step 2)
if [[ $backend == etcd ]]; then
    kill -9 "${pids[1]}"
    wait_until 60 "another node is elected to coordinate" -- bash -c "cat '$work'/node-[0234].log | grep -q 'was elected'"
    start_node 1 --join
    wait_until 120 "node 1 recovers and takes part again" -- bash -c "grep -c 'recovered the state' '$work/node-1.log' | grep -q 1"
else
    kill -9 "$coordinator"
    sleep 1
    start_coordinator
fi
wait_until 60 "the new coordinator carries on" -- coordinator_says "carrying on the run at step"
wait_until 60 "training goes on after the restart" -- bash -c "[[ \$(tail -1 '$work/run/metrics/node-2.jsonl' | grep -o '\"outer_step\":[0-9]*' | cut -d: -f2) -gt $((step + 1)) ]]"

# The end: nodes 1-4 finish; every outer step's parameters agree across the nodes that ran it.
for i in 1 2 3 4; do
    wait_until 300 "node $i finishes" -- bash -c "! kill -0 ${pids[$i]}"
    wait "${pids[$i]}"; code=$?
    expect_rc "node $i exits 0" 0 -- test "$code" -eq 0
done
expect_rc "the finished nodes hold bit-identical parameters" 0 -- \
    test "$(grep -ho '"params_hash":"[0-9a-f]*"' "$work"/run/summary/node-{1,2,3,4}.json | sort -u | wc -l)" -eq 1
expect_rc "after every outer step, every node that committed it holds the same parameters" 0 -- \
    test "$(grep -ho '"outer_step":[0-9]*,.*"params_hash":"[0-9a-f]*"' "$work"/run/metrics/node-*.jsonl |
            sed -E 's/"outer_step":([0-9]+),.*"params_hash":"([0-9a-f]+)"/\1 \2/' | sort -u | cut -d' ' -f1 | uniq -d | wc -l)" -eq 0
expect_summary || { diagnose; exit 1; }
