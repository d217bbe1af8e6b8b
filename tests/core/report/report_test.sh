#!/usr/bin/env bash
# `pangea report`, looked at in a real browser: a two-node run that evaluates and checkpoints
# ends with `pangea launch` naming its report; headless Chromium renders the page to a PNG
# without script errors, and its SVGs hold a line per node with a point per outer step and a
# marker per checkpoint saved. The report is also written while a run goes on, and marks the
# step a killed node left.
#   report_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/tiny_run.sh"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
command -v chromium >/dev/null || { echo "FAIL: chromium is not installed (Debian: apt-get install chromium)"; exit 1; }
# Chromium as root needs --no-sandbox; its logging to stderr carries the page's console.
browse() { chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --enable-logging=stderr --v=0 "$@" 2>"$work/console.txt"; }

tiny_run_manifest "$work/run.toml" report 3 2 6 'ring_order = "rank"
[checkpoint]
interval = 2'
expect "launch names the report" 0 "report: $work/run/report.html" -- \
    "$pangea" launch "$work/run.toml" --set run.dir="$work/run" --set train.eval_interval=2
report=$work/run/report.html

browse --window-size=1200,2400 --screenshot="$work/report.png" "file://$report" >/dev/null
expect "Chromium renders it to a PNG" 0 "PNG image data, 1200 x 2400" -- file "$work/report.png"
expect_rc "... of some substance (over 50 KB)" 0 -- test "$(stat -c %s "$work/report.png")" -gt 50000
browse --dump-dom "file://$report" >"$work/dom.html"
expect_rc "... with no script errors or console messages" 1 -- grep -E "Uncaught|CONSOLE" "$work/console.txt"
# The points of node N's line in chart C (from the rendered DOM).
points() {
    awk -v chart="$1" -v series="$2" '
        index($0, "data-chart=\"" chart "\"") { inside = 1 }
        inside && index($0, "<polyline") && index($0, "data-series=\"" series "\"") {
            match($0, /points="[^"]*"/); p = substr($0, RSTART + 8, RLENGTH - 9); print split(p, a, " "); exit }
        inside && index($0, "</svg>") { inside = 0 }' "$work/dom.html"
}
for chart in loss tokens utilization allreduce-seconds allreduce-bytes members; do
    for node in 0 1; do
        expect_equal "chart $chart: node $node's line has a point per outer step" 6 "$(points "$chart" "node $node")"
    done
done
expect_equal "the held-out loss: a point per evaluation (steps 2, 4) and the final one" 3 "$(points loss "node 0 eval")"
expect_equal "a marker per checkpoint saved, in every chart (3 per node, 6 charts)" 36 \
    "$(grep -c 'saved a checkpoint of step [246]</title>' "$work/dom.html")"
expect "the summary table counts each node's checkpoints" 0 "<td>3 / 0 / 0</td><td>6</td>" -- cat "$work/dom.html"
expect "... and names the run finished" 0 "2 nodes, finished, 6 outer steps" -- cat "$work/dom.html"

# While a run goes on: the report says so and holds the steps done.
"$pangea" launch "$work/run.toml" --set run.dir="$work/long" --set diloco.outer_steps=40 >"$work/long.out" 2>&1 &
launched=$!
wait_for 120 bash -c "test \$(cat '$work/long/metrics/node-0.jsonl' 2>/dev/null | wc -l) -ge 2"
expect "pangea report writes it while the run goes on" 0 "wrote $work/long/report.html" -- "$pangea" report "$work/long"
expect "... saying so" 0 "2 nodes, in progress, 40 outer steps" -- cat "$work/long/report.html"
expect "... to another file with -o" 0 "wrote $work/elsewhere.html" -- "$pangea" report "$work/long" -o "$work/elsewhere.html"
wait "$launched"
# A node killed mid-run: the others carry on, and the report marks the step they saw it leave.
tiny_run_manifest "$work/drop.toml" drop 3 3 30 'ring_order = "rank"'
"$pangea" launch "$work/drop.toml" --set run.dir="$work/drop" >"$work/drop.out" 2>&1 &
launched=$!
wait_for 120 bash -c "test \$(cat '$work/drop/metrics/node-2.jsonl' 2>/dev/null | wc -l) -ge 3"
pkill -KILL -f -- "--node-id 2 .*run.dir=$work/drop" || pkill -KILL -f -- "run.dir=$work/drop.*--node-id 2"
wait "$launched"
expect "the launch names the report after a node died" 0 "report: $work/drop/report.html" -- cat "$work/drop.out"
expect "... whose events say the others saw it leave" 0 "node 0 sees 1 node(s) leave: 2 members" -- \
    cat "$work/drop/report.html"
expect "... marked in the members chart" 0 "node 0 sees 1 node(s) leave: 2 members</title></line>" -- \
    cat "$work/drop/report.html"
expect "... and a warning that node 2 stopped early" 0 "node 2 wrote no summary: it stopped after outer step" -- \
    cat "$work/drop/report.html"

expect "a directory without metrics is named" 1 "$work/none: no metrics/node-<i>.jsonl" -- "$pangea" report "$work/none"
expect_summary
