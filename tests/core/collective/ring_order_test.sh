#!/usr/bin/env bash
# The elastic mesh's measured ring order ([mesh] ring_order = "measured", collective/ring_planner)
# over emulated links (bench/wan.sh: network namespaces, real rate limits), 4 nodes training:
#   1. equal links: every node forms the same ring
#   2. two sites (nodes 0 and 2 at one, 1 and 3 at the other) joined by one slow trunk: every
#      node logs the same ring, one that crosses the trunk twice instead of node-id order's four
#      times
# and each run ends with bit-identical parameters on every node. Needs root; skipped otherwise.
#   ring_order_test.sh <pangea binary> <source root>
set -uo pipefail
pangea=$1 root=$2
source "$root/tests/lib/netns.sh"
require_network_namespaces
source "$root/tests/lib/expect.sh"
source "$root/tests/lib/tiny_run.sh"
work=$(mktemp -d)
trap 'pkill -9 -f -- "$work" 2>/dev/null; "$root/bench/wan.sh" down 4 >/dev/null 2>&1; [[ -n ${KEEP:-} ]] && echo "kept $work" || rm -rf "$work"' EXIT

tiny_run_manifest "$work/run.toml" ring-order 3 4 4 'ring_order = "measured"
probe_bytes = 4194304'
# The ring each node logged (its first), one line per node.
rings() { grep -ho 'runs in the order [0-9, ]*' "$1"/logs/node-*.log | sed 's/runs in the order //; s/ *$//' | sort | uniq -c; }
crossings() {  # how many hops of ring "a, b, c, d" join nodes of different parity (sites)
    local -a nodes
    IFS=', ' read -r -a nodes <<<"$1"
    local n=${#nodes[@]} i count=0
    for ((i = 0; i < n; i++)); do (( (nodes[i] - nodes[(i + 1) % n]) % 2 != 0 )) && count=$((count + 1)); done
    echo "$count"
}
train() {  # run directory
    "$pangea" launch "$work/run.toml" --netns pangea-n --host '10.77.0.{r}' --set run.dir="$1" >"$1.out" 2>&1
}

# 1. Equal links.
"$root/bench/wan.sh" up 4 --rate 100mbit >/dev/null || { echo "FAIL: bench/wan.sh up 4"; exit 1; }
expect_rc "four nodes train over equal links" 0 -- train "$work/equal"
expect "... to bit-identical parameters" 0 "all nodes hold bit-identical parameters" -- cat "$work/equal.out"
# (Which ring: node-id order unless noise in the probes made another look 1.5 times faster.)
expect_equal "every node forms the same ring" 1 "$(rings "$work/equal" | grep -c .)"
expect "... from what it measured" 0 "measured: slowest hop" -- cat "$work/equal/logs/node-0.log"

# 2. Two sites and a slow trunk.
"$root/bench/wan.sh" up 4 --rate 100mbit --sites --trunk-rate 10mbit >/dev/null || { echo "FAIL: bench/wan.sh up 4 --sites"; exit 1; }
expect_rc "four nodes train across two sites" 0 -- train "$work/sites"
expect "... to bit-identical parameters" 0 "all nodes hold bit-identical parameters" -- cat "$work/sites.out"
ring=$(rings "$work/sites")
expect_equal "every node forms the same ring" 1 "$(echo "$ring" | grep -c .)"
expect_equal "... all four" 4 "$(echo "$ring" | awk '{print $1}')"
order=$(echo "$ring" | sed 's/^ *[0-9]* //')
expect_equal "... one that crosses the trunk twice (ring: $order)" 2 "$(crossings "$order")"
expect "... measured, and said so" 0 "(measured: slowest hop" -- cat "$work/sites/logs/node-0.log"
expect_summary
