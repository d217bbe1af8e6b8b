#!/usr/bin/env bash
# An outer optimizer that fails (optim/faulty wrapping optim/nesterov with its defaults):
#   1. create() or init() fails: the node stops before training, with the plugin's error;
#   2. one node, one failed step (outer step 3): the core does not retry an optimizer step; the
#      run stops cleanly with the plugin's error, its checkpoints stay whole, and resuming from
#      the latest one (optim/nesterov) ends bit-identical to a run where nothing failed;
#   3. three nodes, node 1's steps fail from outer step 2 on: node 1 stops with the error after
#      the step was committed; the others apply it and finish without node 1, in agreement.
#   optim_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
write_manifest 1
faulty=(--set optim.plugin=faulty --set optim.inner=nesterov --set optim.status=internal)

# 1. At the start.
bounded 120 create -- "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/create" "${faulty[@]}" \
    --set optim.fail=create
check_rc "create() fails: the node stops" 1
expect "... with the plugin's error" 0 \
    "error: optim/faulty: create() failed with PANGEA_ERR_INTERNAL: faulty: injected failure of create (call 1 in this process)" \
    -- cat "$work/create.out"
bounded 120 init -- "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/init" "${faulty[@]}" --set optim.fail=init
check_rc "init() fails: the node stops" 1
expect "... with the plugin's error" 0 \
    "optim/faulty: init(229888) failed with PANGEA_ERR_INTERNAL: faulty: injected failure of init (call 1 of init on optim/nesterov)" \
    -- cat "$work/init.out"
expect_rc "... before any outer step" 0 -- test ! -s "$work/init/metrics/node-0.jsonl"

# 2. One node, checkpoints after every outer step, the third step fails once.
bounded 300 reference -- "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/ref"
check_rc "the reference run" 0
want=$(json_field "$work/ref/summary/node-0.json" params_hash)
dir=$work/once
bounded 300 once -- "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$dir" --set checkpoint.interval=1 \
    "${faulty[@]}" --set optim.fail=step --set optim.after=2 --set optim.times=1
check_rc "a failed outer step stops the run" 1
expect "... with the plugin's error" 0 \
    "error: optim/faulty: step failed with PANGEA_ERR_INTERNAL: faulty: injected failure of step (call 3 of step on optim/nesterov)" \
    -- cat "$work/once.out"
expect_equal "two outer steps were applied" "$(hashes "$work/ref" 0 | head -2)" "$(hashes "$dir" 0)"
expect "the checkpoint of step 2 is the latest and whole" 0 "step-00000002" -- cat "$dir/checkpoints/faulty/latest"
expect "... and verifies" 0 "inner_optimizer.bin: ok" -- "$pangea" checkpoint inspect "$work/run.toml" latest --set run.dir="$dir"
bounded 300 resume -- "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$dir" --set checkpoint.interval=1 --resume latest
check_rc "resuming from it with optim/nesterov" 0
expect_equal "... ends bit-identical to the run without failures" "$want" "$(json_field "$dir/summary/node-0.json" params_hash)"

# 3. Three nodes; node 1's optimizer fails for good from outer step 2 on.
dir=$work/node1
bounded 300 node1 -- "$pangea" launch "$work/run.toml" --set run.dir="$dir" --set mesh.nodes=3 "${faulty[@]}" \
    --set optim.fail=step --set optim.node=1 --set optim.after=1 --set optim.times=-1
check_rc "the launch reports the failed node" 1
expect "node 1 stops with the plugin's error" 0 \
    "error: optim/faulty: step failed with PANGEA_ERR_INTERNAL: faulty: injected failure of step (call 2 of step on optim/nesterov)" \
    -- cat "$dir/logs/node-1.log"
expect "... having applied outer step 1 only" 0 "1" -- bash -c "wc -l <'$dir/metrics/node-1.jsonl'"
expect "the others finish in agreement" 0 "the nodes that finished hold bit-identical parameters" -- cat "$work/node1.out"
expect_equal "... after every outer step" "$(hashes "$dir" 0)" "$(hashes "$dir" 2)"
expect "... the last ones without node 1" 0 '"members":2' -- tail -1 "$dir/metrics/node-0.jsonl"
expect "... and step 2 with it (it was committed before node 1's optimizer failed)" 0 '"outer_step":2,' -- \
    bash -c "grep '\"members\":3' '$dir/metrics/node-0.jsonl'"

expect_summary
