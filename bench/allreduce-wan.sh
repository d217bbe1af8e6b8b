#!/usr/bin/env bash
# The all-reduce benchmark on emulated WAN links, with LibTorch's c10d Gloo all-reduce as the
# baseline on the same links: installs what is missing (libtorch-dev and libgloo-dev for the
# baseline), builds, creates the namespaces (bench/wan.sh), runs `pangea bench allreduce`, and
# removes the namespaces again. Root only (namespaces).
#
#   bench/allreduce-wan.sh [--nodes 4] [--rate 200] [--sizes "16 64 256"] [--repeat 3]
#                          [--lanes L --lane-rate MBIT] [-- extra bench options]
# With --lanes, one flow gets at most --lane-rate of a node's --rate, and the bench runs 1, 2 .. L
# rings in parallel (ring k over the nodes' addresses 10.77.k.*): the W rings of nodes of W workers.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nodes=4 rate=200 sizes="16 64 256" repeat=3 lanes=1 lane_rate= extra=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --nodes) nodes=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --sizes) sizes=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --lanes) lanes=$2; shift 2 ;;
        --lane-rate) lane_rate=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "usage: $0 [--nodes N] [--rate MBIT] [--sizes \"MiB ...\"] [--repeat K] [--lanes L --lane-rate MBIT] [-- bench options]" >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "error: $0 needs root (network namespaces)" >&2; exit 1; }

source "$root/scripts/lib.sh"
PANGEA_PACKAGES+=(iproute2 libtorch-dev libgloo-dev)
install_missing_packages
build_pangea

trap '"$root/bench/wan.sh" down "$nodes" >/dev/null' EXIT
lane_args=() ring_args=()
if (( lanes > 1 )); then
    lane_args=(--lanes "$lanes" --lane-rate "${lane_rate:?--lanes needs --lane-rate}mbit")
    for ((k = 1; k <= lanes; k *= 2)); do ring_args+=(--rings "$k"); done
fi
"$root/bench/wan.sh" up "$nodes" --rate "${rate}mbit" "${lane_args[@]}"
size_args=()
for size in $sizes; do size_args+=(--sizes "$size"); done
"$PANGEA_BUILD/bin/pangea" bench allreduce --nodes "$nodes" --netns pangea-n --hosts '10.77.{k}.{r}' "${ring_args[@]}" \
    --link-mbit "$rate" --repeat "$repeat" "${size_args[@]}" \
    --baseline "$PANGEA_BUILD/bin/pangea-bench-c10d" --baseline-device if:wan0 "${extra[@]}"
