#!/usr/bin/env bash
# Training with Gloo's own ring all-reduce: `[transport] plugin = "gloo"`, `allreduce = "gloo"`,
# `[compress] plugin = "none"` (3 nodes), against the same run over the core's ring (gloo's
# default, allreduce = "pangea"). Both runs must agree across their nodes bit for bit after every
# outer step; between the two runs the parameters may differ in the last bits (the two rings add
# in different orders), so the runs are compared by their final loss.
#   gloo_allreduce_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/tiny_run.sh"
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT

tiny_run_manifest "$work/run.toml" gloo-allreduce 11 3 4 '[compress]
plugin = "none"
[transport]
plugin = "gloo"'

for ring in pangea gloo; do
    expect "3 nodes, allreduce = \"$ring\": every node holds the same parameters" 0 \
        "all nodes hold bit-identical parameters" -- \
        "$pangea" launch "$work/run.toml" --set transport.allreduce="$ring" --set run.dir="$work/$ring"
    expect_rc "... after every outer step" 0 -- \
        test "$(grep -ho '"outer_step":[0-9]*,.*"params_hash":"[0-9a-f]*"' "$work/$ring"/metrics/node-*.jsonl |
                sed -E 's/"outer_step":([0-9]+),.*"params_hash":"([0-9a-f]+)"/\1 \2/' | sort -u |
                cut -d' ' -f1 | uniq -d | wc -l)" -eq 0
done
expect "the nodes with allreduce = \"gloo\" say that Gloo's all-reduce ran" 0 "transport/gloo's own all-reduce" -- \
    cat "$work/gloo/logs/node-0.log"
expect_rc "the nodes with allreduce = \"pangea\" ran the core's ring" 1 -- \
    grep -q "own all-reduce" "$work/pangea/logs/node-0.log"
ours=$(json_field "$work/pangea/summary/node-0.json" final_loss)
gloos=$(json_field "$work/gloo/summary/node-0.json" final_loss)
expect_rc "the final losses agree closely (core's ring $ours, Gloo's ring $gloos)" 0 -- \
    awk -v a="$ours" -v b="$gloos" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-3 * a) }'
if [[ $(json_field "$work/pangea/summary/node-0.json" params_hash) == $(json_field "$work/gloo/summary/node-0.json" params_hash) ]]; then
    echo "note: both rings gave bit-identical parameters"
else
    echo "note: the two rings' parameters differ in the last bits (the order of adding differs), as expected"
fi
expect_summary
