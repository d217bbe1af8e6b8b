#!/usr/bin/env bash
# Live recovery over an emulated WAN link: one node trains alone, a second joins with --join and
# fetches the whole training state from it over a link of --rate Mbit/s each way (bench/wan.sh).
# Reports the transfer rate against the link rate (target: >= 80%). Root only.
#
#   sudo bench/recovery.sh [--rate 20] [--layers 4] [--d-model 256]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rate=20 layers=4 d_model=256
while [[ $# -gt 0 ]]; do
    case $1 in
        --rate) rate=$2; shift 2 ;;
        --layers) layers=$2; shift 2 ;;
        --d-model) d_model=$2; shift 2 ;;
        *) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "error: bench/recovery.sh needs root (network namespaces)" >&2; exit 1; }
source "$root/scripts/lib.sh"
PANGEA_PACKAGES+=(iproute2)
install_missing_packages
build_pangea
pangea=$PANGEA_BUILD/bin/pangea
work=$(mktemp -d /tmp/pangea-recovery-XXXXXX)
trap 'pkill -9 -f -- "$work" 2>/dev/null; "$root/bench/wan.sh" down 3 >/dev/null 2>&1; rm -rf "$work"' EXIT
"$root/bench/wan.sh" up 3 --rate "${rate}mbit" >/dev/null

common=(--run-id 7 --set run.dir="$work/run" --set mesh.nodes=2 --set mesh.coordinator=10.77.0.3:7070
        --set model.layers="$layers" --set model.d_model="$d_model" --set model.ffn=$((3 * d_model))
        --set diloco.inner_steps=2 --set diloco.outer_steps=100000 --set train.eval_interval=0)
ip netns exec pangea-n3 "$pangea" coordinator "$root/examples/local.toml" --run-id 7 --listen 10.77.0.3:7070 \
    --set mesh.nodes=2 >"$work/coordinator.log" 2>&1 &
ip netns exec pangea-n1 "$pangea" run "$root/examples/local.toml" --node-id 0 "${common[@]}" \
    --set mesh.address=10.77.0.1:0 >"$work/node-0.log" 2>&1 &
for _ in $(seq 1 600); do grep -q '"outer_step":1,' "$work/run/metrics/node-0.jsonl" 2>/dev/null && break; sleep 0.1; done
say "node 1 joins over a ${rate} Mbit/s link"
ip netns exec pangea-n2 "$pangea" run "$root/examples/local.toml" --node-id 1 --join "${common[@]}" \
    --set mesh.address=10.77.0.2:0 >"$work/node-1.log" 2>&1 &
for _ in $(seq 1 6000); do grep -q "recovered the state" "$work/node-1.log" && break; sleep 0.1; done
line=$(grep -o "recovered the state.*" "$work/node-1.log") || { echo "error: no recovery; node 1 log:" >&2; tail "$work/node-1.log" >&2; exit 1; }
echo "$line"
mbps=$(sed -E 's/.*\(([0-9.]+) MB\/s\).*/\1/' <<<"$line")
awk -v m="$mbps" -v r="$rate" 'BEGIN { printf "transfer %.2f MB/s on a %d Mbit/s link (%.2f MB/s): %.0f%% of the link rate\n", m, r, r / 8, 100 * m / (r / 8) }'
