#!/usr/bin/env bash
# A transport that fails on one node of three (transport/faulty wrapping transport/tcp with
# `node = 1`, through `pangea launch`, on loopback). Node 1 makes at least 6 isends, 6 irecvs
# and 12 waits per outer step (the ring's connections and their authentication come first), so
# `after = 10` (20 for wait) fails one in an early outer step, after the ring is formed:
#   1. one isend, one irecv, one wait fails (three runs; a failed wait breaks its connection):
#      the mesh retries the step and the run ends bit-identical, after every outer step, to
#      one where nothing failed;
#   2. connect fails for good with UNSUPPORTED: node 1 stops at once with the plugin's error,
#      the others drop it and finish in agreement.
#   transport_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
write_manifest 3
faulty=(--set transport.plugin=faulty --set transport.inner=tcp --set transport.node=1)

bounded 300 reference -- "$pangea" launch "$work/run.toml" --set run.dir="$work/ref"
check_rc "3 nodes over transport/tcp, nothing fails" 0

# 1. Transient.
for case in "isend 10 io" "irecv 10 io" "wait 20 peer_lost"; do
    read -r fn after status <<<"$case"
    dir=$work/$fn
    bounded 300 "$fn" -- "$pangea" launch "$work/run.toml" --set run.dir="$dir" "${faulty[@]}" \
        --set transport.fail="$fn" --set transport.after="$after" --set transport.status="$status"
    check_rc "one $fn fails on node 1: the run completes" 0
    expect "... with all nodes in agreement" 0 "all nodes hold bit-identical parameters" -- cat "$work/$fn.out"
    expect_rc "node 1's all-reduce failed with the plugin's error" 0 -- grep -q \
        "all-reduce in epoch [0-9]* (step [0-9]*): nodes 0, 1, 2 failed: .*faulty: injected failure of $fn (call $((after + 1)) of $fn on transport/tcp)" \
        "$dir/logs/node-1.log"
    expect "the coordinator retried the step" 0 "nodes 0, 1, 2 is retried: node" -- cat "$dir/logs/coordinator.log"
    for i in 0 1 2; do
        expect_equal "bit-identical to the run without failures after every outer step (node $i)" \
            "$(hashes "$work/ref" 0)" "$(hashes "$dir" "$i")"
    done
done

# 2. connect fails for good on node 1, with UNSUPPORTED (this transport cannot connect at
#    all): node 1 stops at once with the plugin's error; the others drop it and finish.
dir=$work/connect
bounded 300 connect -- "$pangea" launch "$work/run.toml" --set run.dir="$dir" "${faulty[@]}" \
    --set transport.fail=connect --set transport.times=-1 --set transport.status=unsupported
check_rc "connect always fails on node 1: the launch reports a failed node" 1
expect "node 1 stops with an error" 0 "node 1 failed (exit status 1)" -- cat "$work/connect.out"
expect_rc "... having applied no outer step" 0 -- test ! -s "$dir/metrics/node-1.jsonl"
expect "node 1's error names the peer, the plugin and its failure, and why it is not retried" 0 \
    "node 1 cannot connect to node 2 at" -- cat "$dir/logs/node-1.log"
expect "... with the plugin's text" 0 \
    "connect failed with PANGEA_ERR_UNSUPPORTED: faulty: injected failure of connect" -- cat "$dir/logs/node-1.log"
expect_rc "... at once, not after 20 epochs" 1 -- grep -q "epochs in a row" "$dir/logs/node-1.log"
for i in 0 2; do
    expect "node $i finishes all 4 outer steps without node 1" 0 '"outer_step":4' -- cat "$dir/metrics/node-$i.jsonl"
done
expect_equal "nodes 0 and 2 agree after every outer step" "$(hashes "$dir" 0)" "$(hashes "$dir" 2)"

expect_summary
