#!/usr/bin/env bash
# DiLoCo benchmarks on the embedded default (examples/local.toml: tiny model, built-in corpus),
# figures in docs/training.md:
#   loss         final held-out loss and bytes sent per node of 1 node and of 4-node DiLoCo with
#                each codec (fp32, int8, fp4, topk), and with --fragments fragments synced in
#                turn, blocking and overlapped, the same inner steps per node (loopback), for
#                each seed of --seeds and their mean
#   utilization  compute utilization (inner compute time / wall time) of blocking mode and of
#                --fragments fragments with overlap, --nodes nodes (one per core: on a shared
#                core a node's rounds vary, and the ring waits for its slowest) over emulated WAN
#                links of --rate Mbit/s each way (bench/wan.sh; root only)
#   ring         the outer all-reduce's time per outer step with [mesh] ring_order = "rank" and
#                "measured", 4 nodes at two emulated sites (bench/wan.sh --sites: nodes 0 and 2
#                at one, 1 and 3 at the other; --rate Mbit/s links, one --trunk-rate Mbit/s
#                trunk between the sites; root only), --codec
#   stragglers   4 nodes, each held to its own share of the CPU (a cgroup quota; root only),
#                node 3 to half of it: wall time, compute utilization and final eval loss of
#                the run without a straggler, with one and every step waiting for it, and with
#                one and [diloco] quorum = 3, grace_ms = --grace, for each seed of --seeds
#                (--skip-wait leaves out the run where every step waits: it takes twice as long)
#
#   bench/diloco.sh [loss] [utilization] [ring] [stragglers] [--rate 20] [--trunk-rate 20]
#                   [--outer 40] [--inner 10] [--fragments 5] [--codec int8] [--seeds "1234 99"]
#                   [--nodes 4] [--grace 200] [--skip-wait]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
parts=() rate=20 trunk_rate=20 outer=40 inner=10 fragments=5 codec=int8 seeds="1234 99" nodes=4 grace=200 skip_wait=no
while [[ $# -gt 0 ]]; do
    case $1 in
        loss|utilization|ring|stragglers) parts+=("$1"); shift ;;
        --grace) grace=$2; shift 2 ;;
        --skip-wait) skip_wait=yes; shift ;;
        --rate) rate=$2; shift 2 ;;
        --trunk-rate) trunk_rate=$2; shift 2 ;;
        --outer) outer=$2; shift 2 ;;
        --inner) inner=$2; shift 2 ;;
        --fragments) fragments=$2; shift 2 ;;
        --nodes) nodes=$2; shift 2 ;;
        --codec) codec=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
[[ ${#parts[@]} -gt 0 ]] || parts=(loss utilization)

source "$root/scripts/lib.sh"
PANGEA_PACKAGES+=(iproute2)
install_missing_packages
build_pangea
pangea=$PANGEA_BUILD/bin/pangea
work=$(mktemp -d /tmp/pangea-diloco-XXXXXX)
field() { grep -o "\"$2\":[^,}]*" "$1" | head -1 | cut -d: -f2 | tr -d '"'; }
mean() {  # mean of a summary field over node files
    local key=$1; shift
    for f in "$@"; do field "$f" "$key"; done | awk '{ s += $1; n++ } END { printf "%.4f", s / n }'
}

for part in "${parts[@]}"; do
case $part in
loss)
    say "loss: $outer outer x $inner inner steps per node, seeds $seeds"
    # name | nodes | settings
    runs=("1 node|1|"
          "DiLoCo fp32|4|--set compress.plugin=none"
          "DiLoCo int8|4|--set compress.plugin=int8"
          "DiLoCo fp4|4|--set compress.plugin=fp4"
          "DiLoCo topk|4|--set compress.plugin=topk"
          "DiLoCo fp32, $fragments fragments|4|--set compress.plugin=none --set diloco.fragments=$fragments"
          "... and overlap|4|--set compress.plugin=none --set diloco.fragments=$fragments --set diloco.overlap=true"
          "... overlap, alpha 0|4|--set compress.plugin=none --set diloco.fragments=$fragments --set diloco.overlap=true --set diloco.overlap_alpha=0")
    printf '\n%-26s' "run"
    for seed in $seeds; do printf ' %12s' "seed $seed"; done
    printf ' %10s %9s %14s %10s\n' "mean" "vs fp32" "sent MiB/node" "fp32/sent"
    fp32_loss="" fp32_bytes=""
    for k in "${!runs[@]}"; do
        IFS='|' read -r name nodes settings <<<"${runs[$k]}"
        losses=() bytes=0
        for seed in $seeds; do
            dir="$work/run$k-seed$seed"
            # shellcheck disable=SC2086  # (settings: words)
            "$pangea" launch -n "$nodes" "$root/examples/local.toml" --set diloco.outer_steps="$outer" \
                --set diloco.inner_steps="$inner" --set train.eval_interval=0 --set run.seed="$seed" $settings \
                --set run.dir="$dir" >"$dir.log" 2>&1 || { echo "error: $name, seed $seed failed: see $dir.log" >&2; exit 1; }
            losses+=("$(field "$dir/summary/node-0.json" final_eval_loss)")
            bytes=$(field "$dir/summary/node-0.json" bytes_sent)
        done
        mean=$(printf '%s\n' "${losses[@]}" | awk '{ s += $1; n++ } END { printf "%.4f", s / n }')
        [[ $name == "DiLoCo fp32" ]] && fp32_loss=$mean fp32_bytes=$bytes
        printf '%-26s' "$name"
        for loss in "${losses[@]}"; do printf ' %12.4f' "$loss"; done
        printf ' %10s %9s %14.2f %10s\n' "$mean" \
            "$([[ -n $fp32_loss ]] && awk -v a="$mean" -v b="$fp32_loss" 'BEGIN { printf "%+.1f%%", 100 * (a / b - 1) }')" \
            "$(awk -v b="$bytes" 'BEGIN { print b / 1048576 }')" \
            "$([[ -n $fp32_bytes && $bytes -gt 0 ]] && awk -v a="$fp32_bytes" -v b="$bytes" 'BEGIN { printf "%.1fx", a / b }')"
    done
    ;;
utilization)
    [[ $(id -u) -eq 0 ]] || { echo "error: the utilization part needs root (network namespaces)" >&2; exit 1; }
    say "utilization: $nodes nodes, $rate Mbit/s links, $codec, $outer outer x $inner inner steps, overlap with $fragments fragments"
    trap '"$root/bench/wan.sh" down "$nodes" >/dev/null' EXIT
    "$root/bench/wan.sh" up "$nodes" --rate "${rate}mbit" >/dev/null
    for mode in false true; do
        "$pangea" launch -n "$nodes" "$root/examples/local.toml" --netns pangea-n --host '10.77.0.{r}' \
            --set diloco.outer_steps="$outer" --set diloco.inner_steps="$inner" --set train.eval_interval=0 \
            --set compress.plugin="$codec" --set diloco.overlap=$mode \
            --set diloco.fragments="$([[ $mode == true ]] && echo "$fragments" || echo 1)" --set run.dir="$work/overlap-$mode" >/dev/null
    done
    # utilization: over the whole run (the last overlapped all-reduce is waited for at the end);
    # per step: the mean of the outer steps' own utilization (the steady state).
    printf '\n%-10s %12s %9s %12s %14s %12s %12s\n' "mode" "utilization" "per step" "wall s" "all-reduce s" \
        "blocked s" "eval loss"
    for mode in false true; do
        s=("$work/overlap-$mode"/summary/node-*.json)
        printf '%-10s %11s%% %8s%% %12s %14s %12s %12s\n' "$([[ $mode == true ]] && echo overlap || echo blocking)" \
            "$(awk -v u="$(mean compute_utilization "${s[@]}")" 'BEGIN { printf "%.1f", 100 * u }')" \
            "$(grep -ho '"compute_utilization":[0-9.e-]*' "$work/overlap-$mode"/metrics/*.jsonl | cut -d: -f2 |
               awk '{ s += $1; n++ } END { printf "%.1f", 100 * s / n }')" \
            "$(mean wall_seconds "${s[@]}")" "$(mean allreduce_seconds "${s[@]}")" "$(mean blocked_seconds "${s[@]}")" \
            "$(field "${s[0]}" final_eval_loss)"
    done
    ;;
ring)
    [[ $(id -u) -eq 0 ]] || { echo "error: the ring part needs root (network namespaces)" >&2; exit 1; }
    say "ring: 4 nodes at two sites, $rate Mbit/s links, a $trunk_rate Mbit/s trunk, $codec, $outer outer x $inner inner steps"
    trap '"$root/bench/wan.sh" down 4 >/dev/null' EXIT
    "$root/bench/wan.sh" up 4 --rate "${rate}mbit" --sites --trunk-rate "${trunk_rate}mbit" >/dev/null
    for order in rank measured; do
        "$pangea" launch -n 4 "$root/examples/local.toml" --netns pangea-n --host '10.77.0.{r}' \
            --set diloco.outer_steps="$outer" --set diloco.inner_steps="$inner" --set train.eval_interval=0 \
            --set compress.plugin="$codec" --set mesh.ring_order=$order --set run.dir="$work/ring-$order" >/dev/null
    done
    printf '\n%-10s %-12s %18s %10s %16s\n' "order" "ring" "all-reduce s/step" "wall s" "sent MiB/node"
    for order in rank measured; do
        s=("$work/ring-$order"/summary/node-*.json)
        ring=$(grep -ho 'runs in the order [0-9, ]*' "$work/ring-$order"/logs/node-0.log | head -1 | sed 's/runs in the order //; s/,//g' || true)
        printf '%-10s %-12s %18s %10s %16s\n' "$order" "${ring:-0 1 2 3}" \
            "$(awk -v a="$(mean allreduce_seconds "${s[@]}")" -v n="$outer" 'BEGIN { printf "%.2f", a / n }')" \
            "$(mean wall_seconds "${s[@]}")" "$(awk -v b="$(field "${s[0]}" bytes_sent)" 'BEGIN { printf "%.1f", b / 1048576 }')"
    done
    grep -ho 'runs in the order.*' "$work/ring-measured"/logs/node-0.log | head -1 || true
    ;;
stragglers)
    [[ $(id -u) -eq 0 ]] || { echo "error: the stragglers part needs root (cgroup CPU quotas)" >&2; exit 1; }
    # Each node runs as on a machine of its own: a cgroup CPU quota of 0.9 x cores / 4 cores (at
    # most one), so that four nodes on fewer cores do not share them unevenly; node 3's machine
    # is half as fast when it straggles. One compute thread each: a second one inside a quota of
    # under a core only adds switching.
    # (getconf, not nproc: nproc answers OMP_NUM_THREADS when it is set.)
    budget=$(awk -v c="$(getconf _NPROCESSORS_ONLN)" 'BEGIN { s = 0.9 * c / 4; if (s > 1) s = 1; printf "%d", s * 10000 }')
    if [[ -d /sys/fs/cgroup/cpu ]]; then cgroups=/sys/fs/cgroup/cpu  # cgroup v1
    else cgroups=/sys/fs/cgroup; echo +cpu >"$cgroups/cgroup.subtree_control"; fi  # v2
    # Quota periods of 10 ms, not the default 100 ms: a node that has spent its share waits for
    # the next period, up to 55 ms of every 100 ms with the default, which a machine of its own
    # would not do.
    limit() {  # limit <node> <quota in microseconds per 10 ms>
        local group="$cgroups/pangea-bench-node-$1"
        mkdir -p "$group"
        if [[ -f $group/cpu.max ]]; then echo "$2 10000" >"$group/cpu.max"
        else echo 10000 >"$group/cpu.cfs_period_us"; echo "$2" >"$group/cpu.cfs_quota_us"; fi
    }
    trap 'rmdir "$cgroups"/pangea-bench-node-* 2>/dev/null' EXIT
    say "stragglers: 4 nodes of $((budget / 100))% of a core each, $outer outer x $inner inner steps; the straggler, node 3, gets $((budget / 200))%"
    # name | node 3 straggles | settings
    runs=("no straggler|no|"
          "straggler, all wait|yes|"
          "straggler, quorum 3|yes|--set diloco.quorum=3 --set diloco.grace_ms=$grace")
    [[ $skip_wait == yes ]] && unset 'runs[1]'
    for seed in $seeds; do
    for k in "${!runs[@]}"; do
        IFS='|' read -r name straggles settings <<<"${runs[$k]}"
        dir="$work/stragglers-$seed-$k"
        for i in 0 1 2 3; do limit "$i" "$budget"; done
        [[ $straggles == yes ]] && limit 3 $((budget / 2))
        # shellcheck disable=SC2086  # (settings: words)
        "$pangea" launch -n 4 "$root/examples/local.toml" --set diloco.outer_steps="$outer" \
            --set diloco.inner_steps="$inner" --set train.eval_interval=0 --set train.threads=1 --set run.seed="$seed" $settings \
            --set run.dir="$dir" >"$dir.log" 2>&1 &
        launched=$!
        for i in 0 1 2 3; do
            pid=""
            for _ in $(seq 1 200); do
                pid=$(pgrep -f -- "--node-id $i .*run.dir=$dir" || true)
                [[ -n $pid ]] && break
                sleep 0.05
            done
            [[ -n $pid ]] || { echo "error: node $i of '$name' did not start: see $dir.log" >&2; exit 1; }
            echo "$pid" >"$cgroups/pangea-bench-node-$i/cgroup.procs"
        done
        wait "$launched" || { echo "error: '$name' failed: see $dir.log" >&2; exit 1; }
    done
    done
    printf '\n%-6s %-22s %8s %16s %9s %13s %14s %11s %9s\n' "seed" "run" "wall s" "util nodes 0-2" "per step" \
        "util node 3" "node 3 steps" "eval loss" "vs none"
    for seed in $seeds; do
    for k in "${!runs[@]}"; do
        IFS='|' read -r name _ _ <<<"${runs[$k]}"
        dir="$work/stragglers-$seed-$k"
        s=("$dir"/summary/node-{0,1,2}.json)
        trained=$({ grep -o '"trained_inner_steps":[0-9]*' "$dir/metrics/node-3.jsonl" || true; } | cut -d: -f2 |
                  awk -v n="$outer" -v h="$inner" '{ s += $1 } END { printf "%d / %d", (NR ? s : n * h), n * h }')
        loss=$(field "$dir/summary/node-0.json" final_eval_loss)
        [[ $k -eq 0 ]] && unthrottled=$loss
        printf '%-6s %-22s %8.1f %15.1f%% %8.1f%% %12.1f%% %14s %11.4f %+8.1f%%\n' "$seed" "$name" "$(mean wall_seconds "${s[@]}")" \
            "$(awk -v u="$(mean compute_utilization "${s[@]}")" 'BEGIN { print 100 * u }')" \
            "$(grep -ho '"compute_utilization":[0-9.e-]*' "$dir"/metrics/node-{0,1,2}.jsonl | cut -d: -f2 |
               awk '{ s += $1; n++ } END { print 100 * s / n }')" \
            "$(awk -v u="$(field "$dir/summary/node-3.json" compute_utilization)" 'BEGIN { print 100 * u }')" \
            "$trained" "$loss" "$(awk -v l="$loss" -v u="$unthrottled" 'BEGIN { print 100 * (l / u - 1) }')"
    done
    done
    ;;
esac
done
rm -rf "$work"
