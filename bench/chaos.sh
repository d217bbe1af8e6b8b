#!/usr/bin/env bash
# Chaos soak (not in CI): N local nodes train for a set time while random nodes are SIGKILLed
# and restarted (with --join), SIGSTOPped past the timeout and resumed, and the coordinator is
# killed and restarted (with --backend etcd: a real etcd on loopback, and the node hosting the
# coordinator is killed instead, so that another is elected). Reports outer steps completed, the worst stall between two committed
# steps, node failures we did not cause, and any divergence (two nodes holding different
# parameters after the same outer step). Target: no hang, no divergence.
#
#   bench/chaos.sh [--nodes 6] [--minutes 10] [--every 5] [--backend builtin|etcd]
#
# --binary DIR soaks a copy of a build's bin/ and lib/ instead of building (so that a rebuild
# meanwhile does not swap the executable under the nodes restarted later).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nodes=6 minutes=10 every=5 backend=builtin binary=
while [[ $# -gt 0 ]]; do
    case $1 in
        --nodes) nodes=$2; shift 2 ;;
        --minutes) minutes=$2; shift 2 ;;
        --every) every=$2; shift 2 ;;
        --backend) backend=$2; shift 2 ;;
        --binary) binary=$2; shift 2 ;;
        *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
source "$root/scripts/lib.sh"
install_missing_packages
if [[ -n $binary ]]; then
    pangea=$binary/bin/pangea
else
    build_pangea >/dev/null
    pangea=$PANGEA_BUILD/bin/pangea
fi
work=$(mktemp -d /tmp/pangea-chaos-XXXXXX)
trap 'pkill -9 -f -- "$work" 2>/dev/null; [[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT
export PANGEA_CHAOS_SECRET=$RANDOM$RANDOM$RANDOM
settings=(--set mesh.nodes="$nodes" --set mesh.min_members=2 --set mesh.heartbeat_ms=500 --set mesh.timeout_ms=2000
          --set mesh.secret_env=PANGEA_CHAOS_SECRET --set model.layers=2 --set diloco.inner_steps=2
          --set diloco.outer_steps=1000000 --set train.eval_interval=0 --set compress.plugin=int8)

if [[ $backend == etcd ]]; then
    port=$((20000 + RANDOM % 12000))  # below the ephemeral range (32768 and up)
    etcd --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$port" \
        --advertise-client-urls "http://127.0.0.1:$port" --listen-peer-urls "http://127.0.0.1:$((port + 1))" \
        >"$work/etcd.log" 2>&1 &
    disown
    sleep 2
    settings+=(--set mesh.backend=etcd --set mesh.etcd="http://127.0.0.1:$port")
fi
start_coordinator() {
    [[ $backend == etcd ]] && return
    "$pangea" coordinator "$root/examples/local.toml" --run-id 5 --listen "${address:-127.0.0.1:0}" \
        --address-file "$work/coordinator.addr" "${settings[@]}" >>"$work/coordinator.log" 2>&1 &
    disown
    coordinator=$!
    for _ in $(seq 1 100); do [[ -s $work/coordinator.addr ]] && break; sleep 0.05; done
    address=$(cat "$work/coordinator.addr")
}
declare -A pid incarnation stopped
start_node() {  # id [--join]
    local i=$1; shift
    incarnation[$i]=$((${incarnation[$i]:-0} + 1))
    "$pangea" run "$root/examples/local.toml" --node-id "$i" --run-id 5 "${settings[@]}" \
        ${address:+--set mesh.coordinator="$address"} --set run.dir="$work/run-$i-${incarnation[$i]}" "$@" \
        >>"$work/node-$i.log" 2>&1 &
    disown
    pid[$i]=$!
}
alive() { kill -0 "${pid[$1]}" 2>/dev/null; }

start_coordinator
for ((i = 0; i < nodes; i++)); do start_node "$i"; done
say "chaos: $nodes nodes, $minutes min, an event every ~$every s; logs in $work"
end=$((SECONDS + 60 * minutes))
kills=0 stops=0 restarts=0 coordinator_restarts=0 failures=0
while ((SECONDS < end)); do
    sleep $((every / 2 + RANDOM % (every + 1)))
    # Nodes that ended on their own are failures we did not cause: count, show, restart.
    for ((i = 0; i < nodes; i++)); do
        if ! alive "$i" && [[ ${pid[$i]} != killed ]]; then
            failures=$((failures + 1))
            echo "node $i ended on its own: $(tail -1 "$work/node-$i.log")"
            start_node "$i" --join
        fi
    done
    live=()
    for ((i = 0; i < nodes; i++)); do alive "$i" && live+=("$i"); done
    victim=${live[RANDOM % ${#live[@]}]}
    case $((RANDOM % 10)) in
        0 | 1 | 2 | 3)  # SIGKILL a node (keeping at least 3), restart a dead one
            if ((${#live[@]} > 3)); then kill -9 "${pid[$victim]}"; pid[$victim]=killed; kills=$((kills + 1)); fi
            for ((i = 0; i < nodes; i++)); do
                if [[ ${pid[$i]} == killed ]] && ((RANDOM % 2)); then start_node "$i" --join; restarts=$((restarts + 1)); fi
            done ;;
        4 | 5)  # SIGSTOP past the timeout
            kill -STOP "${pid[$victim]}"; sleep 3; kill -CONT "${pid[$victim]}"; stops=$((stops + 1)) ;;
        6)  # the coordinator (etcd: the node hosting it)
            if [[ $backend == etcd ]]; then
                host=$(etcdctl --endpoints "http://127.0.0.1:$port" get --prefix /pangea/ --print-value-only | head -1)
                for ((i = 0; i < nodes; i++)); do
                    if [[ -n $host ]] && alive "$i" && ((${#live[@]} > 3)) && grep -q "serving at $host" "$work/node-$i.log"; then
                        kill -9 "${pid[$i]}"; pid[$i]=killed; coordinator_restarts=$((coordinator_restarts + 1))
                    fi
                done
            else
                kill -9 "$coordinator"; sleep 1; start_coordinator; coordinator_restarts=$((coordinator_restarts + 1))
            fi ;;
        *)  # restart every dead node
            for ((i = 0; i < nodes; i++)); do
                if [[ ${pid[$i]} == killed ]]; then start_node "$i" --join; restarts=$((restarts + 1)); fi
            done ;;
    esac
done
pkill -9 -f -- "$work/run-" 2>/dev/null
[[ -n ${coordinator:-} ]] && kill -9 "$coordinator" 2>/dev/null
sleep 0.5

# Outer steps and stalls from every metrics line (wall clock of each commit per node).
cat "$work"/run-*/metrics/node-*.jsonl > "$work/all.jsonl" 2>/dev/null
steps=$(grep -o '"outer_step":[0-9]*' "$work/all.jsonl" | cut -d: -f2 | sort -n | tail -1)
divergent=$(grep -o '"outer_step":[0-9]*,.*"params_hash":"[0-9a-f]*"' "$work/all.jsonl" |
    sed -E 's/"outer_step":([0-9]+),.*"params_hash":"([0-9a-f]+)"/\1 \2/' | sort -u | cut -d' ' -f1 | uniq -d | wc -l)
# The coordinator logs each epoch with its step; the worst gap between two new steps is the stall.
stall=$(cat "$work"/coordinator.log "$work"/node-*.log 2>/dev/null | grep -h '\[coordinator\] epoch' | sort |
    awk '{ split($1, t, ":"); s = t[1] * 3600 + t[2] * 60 + t[3]; match($0, /step [0-9]+/); st = substr($0, RSTART + 5, RLENGTH - 5) + 0;
           if (st > last) { if (prev != "" && s - prev > worst) worst = s - prev; prev = s; last = st } }
         END { printf "%.1f", worst }')
echo
echo "duration            ${minutes} min, $nodes nodes"
echo "events              $kills SIGKILLs, $restarts restarts with --join, $stops SIGSTOP/SIGCONT, $coordinator_restarts coordinator kills ($backend)"
echo "outer steps         $steps committed"
echo "worst stall         $stall s between two committed steps"
echo "node failures       $failures (nodes that ended without being killed)"
echo "divergences         $divergent (outer steps where two nodes hold different parameters)"
[[ $divergent -eq 0 ]]
