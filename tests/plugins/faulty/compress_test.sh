#!/usr/bin/env bash
# A compressor that fails on one node of three (compress/faulty wrapping compress/int8 with
# `node = 1`, through `pangea launch`). Each all-reduce makes node 1 encode 3 times, so
# `after = 3` lets outer step 1 through and fails outer step 2:
#   1. two encodes fail (transiently): every node retries the step (once or twice: the two may
#      fall in one epoch), and the run ends bit-identical, after every outer step, to one where
#      nothing failed;
#   2. every encode fails from then on: the outer step fails on every node (none applies an
#      update the others did not), and every node stops with the error, in bounded time.
#   compress_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
write_manifest 3
faulty=(--set compress.plugin=faulty --set compress.inner=int8 --set compress.fail=encode --set compress.node=1
        --set compress.after=3 --set compress.status=internal)

bounded 300 reference -- "$pangea" launch "$work/run.toml" --set run.dir="$work/ref"
check_rc "3 nodes, int8, nothing fails" 0
want=$(json_field "$work/ref/summary/node-0.json" params_hash)

# 1. Transient.
dir=$work/transient
bounded 300 transient -- "$pangea" launch "$work/run.toml" --set run.dir="$dir" "${faulty[@]}" --set compress.times=2
check_rc "node 1's compressor fails twice: the run completes" 0
expect "... with all nodes in agreement" 0 "all nodes hold bit-identical parameters" -- cat "$work/transient.out"
expect "node 1 logs the injected failures" 0 \
    "all-reduce in epoch 2 (step 2): nodes 0, 1, 2 failed: compress/faulty: encode failed with PANGEA_ERR_INTERNAL: faulty: injected failure of encode (call 4 of encode on compress/int8)" \
    -- cat "$dir/logs/node-1.log"
expect "... both of them" 0 "faulty: injected 2 failure(s) in" -- cat "$dir/logs/node-1.log"
# (Nodes 0 and 2 see node 1's failures only as the coordinator's reason for a retry.)
expect_rc "the wrapper failed only node 1's calls" 0 -- bash -c \
    "! grep -h 'faulty: injected' '$dir/logs/node-0.log' '$dir/logs/node-2.log' | grep -qv 'node 1 reported a failed all-reduce'"
# The second failure may come in the same epoch (node 1's receiving thread encodes too) or in
# the next: step 2 is retried once or twice, the same on every node.
retries=$(grep -c '(step 2): nodes 0, 1, 2 is retried' "$dir/logs/coordinator.log")
expect_rc "the coordinator retried step 2 ($retries times), then went on" 0 -- test "$retries" -ge 1 -a "$retries" -le 2
for i in 0 1 2; do
    expect_rc "node $i retried step 2 as often" 0 -- test "$(grep -c \
        'all-reduce in epoch [0-9]* (step 2): nodes 0, 1, 2 failed' "$dir/logs/node-$i.log")" -eq "$retries"
done
expect_equal "the parameters are bit-identical to the run without failures" "$want" "$(json_field "$dir/summary/node-2.json" params_hash)"
for i in 0 1 2; do
    expect_equal "... after every outer step (node $i)" "$(hashes "$work/ref" 0)" "$(hashes "$dir" "$i")"
done

# 2. Persistent: 20 epochs in a row fail (ElasticOptions::max_attempts), then every node stops.
dir=$work/persistent
bounded 300 persistent -- "$pangea" launch "$work/run.toml" --set run.dir="$dir" "${faulty[@]}" --set compress.times=-1
check_rc "node 1's compressor fails for good: the launch fails" 1
for i in 0 1 2; do
    expect "node $i stops with an error" 0 "node $i failed (exit status 1)" -- cat "$work/persistent.out"
    expect_equal "node $i applied outer step 1 and nothing after it" \
        "$(hashes "$work/ref" 0 | head -1)" "$(hashes "$dir" "$i")"
done
expect "node 1's error names the plugin and its failure" 0 \
    "error: all-reduce of the pseudo-gradient failed: outer step 2 failed in 20 epochs in a row; last: compress/faulty: encode failed with PANGEA_ERR_INTERNAL: faulty: injected failure of encode" \
    -- cat "$dir/logs/node-1.log"
for i in 0 2; do
    expect "node $i gives up on the same step" 0 "error: all-reduce of the pseudo-gradient failed: outer step 2 failed in 20 epochs in a row" \
        -- cat "$dir/logs/node-$i.log"
done
# The others' own failure is only the broken ring: the coordinator tells them the cause.
for i in 0 2; do
    expect "node $i learns node 1's error from the coordinator" 0 \
        "is retried: node 1 reported a failed all-reduce: compress/faulty: encode failed with PANGEA_ERR_INTERNAL" \
        -- cat "$dir/logs/node-$i.log"
done
expect "the launch shows node 1's error" 0 "compress/faulty: encode failed with PANGEA_ERR_INTERNAL: faulty: injected failure of encode" \
    -- cat "$work/persistent.out"

expect_summary
