#!/usr/bin/env bash
# The promise of the plugin ABI: the same binaries and the same manifest, changing only
# `[transport] plugin`, train to bit-identical parameters (3 nodes, int8 all-reduce).
#   swap_test.sh <pangea binary> TRANSPORT...
set -uo pipefail
pangea=$1; shift
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/tiny_run.sh"
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT

tiny_run_manifest "$work/run.toml" swap 11 3 4 '[compress]
plugin = "int8"
[transport]
plugin = "tcp"'

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
        expect_equal "transport/$transport ends bit-identical to transport/$first" "$want" "$hash"
        expect_equal "... after every outer step" \
            "$(grep -o '"params_hash":"[0-9a-f]*"' "$work/$first/metrics/node-2.jsonl")" \
            "$(grep -o '"params_hash":"[0-9a-f]*"' "$work/$transport/metrics/node-2.jsonl")"
    fi
done
expect_summary
