#!/usr/bin/env bash
# The promise of the plugin ABI: the same binaries and the same manifest, changing only
# `[transport] plugin`, train to bit-identical parameters (3 nodes, int8 all-reduce).
#   swap_test.sh <pangea binary> TRANSPORT...
set -uo pipefail
pangea=$1; shift
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT

cat >"$work/run.toml" <<'TOML'
[run]
name = "swap"
seed = 11
[model]
preset = "tiny"
layers = 1
[data]
seq_len = 32
eval_sequences = 8
[train]
lr = 0.003
micro_batch = 4
warmup_steps = 4
threads = 1
[diloco]
inner_steps = 3
outer_steps = 4
[mesh]
nodes = 3
[compress]
plugin = "int8"
[transport]
plugin = "tcp"
TOML

first=
for transport in "$@"; do
    expect "3 nodes over transport/$transport" 0 "all nodes hold bit-identical parameters" -- \
        "$pangea" launch "$work/run.toml" --set transport.plugin="$transport" --set run.dir="$work/$transport"
    expect "the nodes' logs name transport/$transport" 0 "plugins transport/$transport" -- \
        cat "$work/$transport/logs/node-0.log"
    hash=$(json_field "$work/$transport/summary/node-0.json" params_hash)
    if [[ -z $first ]]; then
        first=$transport want=$hash
    else
        expect "transport/$transport ends bit-identical to transport/$first" 0 "$want" -- echo "$hash"
        expect "... after every outer step" 0 "" -- \
            cmp <(grep -o '"params_hash":"[0-9a-f]*"' "$work/$first/metrics/node-2.jsonl") \
                <(grep -o '"params_hash":"[0-9a-f]*"' "$work/$transport/metrics/node-2.jsonl")
    fi
done
expect_summary
