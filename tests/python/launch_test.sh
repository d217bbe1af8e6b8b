#!/usr/bin/env bash
# `pangea launch` starts Python nodes: a manifest whose [run] entry runs the example of
# examples/python/ gets a coordinator, its nodes' logs, progress and the closing table, as C++
# nodes do; and a bad entry fails with the node's own log.
#   launch_test.sh PANGEA PYTHON SOURCE_DIR BUILD_DIR
set -uo pipefail
pangea=$1 python=$2 source=$3 build=$4
source "$source/tests/lib/expect.sh"
work=$(mktemp -d /tmp/pangea-python-launch.XXXXXX)
trap 'rm -rf "$work"' EXIT

manifest() {  # manifest <file> <entry>
    sed -e "s|^dir = .*|dir = \"$work/run\"|" -e "s|^entry = .*|entry = \"$2\"|" \
        -e "s|^outer_steps = .*|outer_steps = 3|" -e "s|^inner_steps = .*|inner_steps = 5|" \
        "$source/examples/python/run.toml" >"$1"
}
manifest "$work/run.toml" "PYTHONPATH=$build/python $python $source/examples/python/train_mlp.py"
expect "pangea launch runs the manifest's Python entry on 4 nodes" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch "$work/run.toml"
expect "each node's log is the Python program's" 0 "node 2: done, parameters" -- cat "$work/run/logs/node-2.log"
expect_equal "every node wrote its metrics" 4 "$(ls "$work/run/summary" | wc -l)"

manifest "$work/bad.toml" "$python -c 'import sys; sys.exit(\\\\\"no such model\\\\\")'"
expect "a failing entry fails the launch with the node's log" 1 "no such model" -- "$pangea" launch "$work/bad.toml"
expect_summary
