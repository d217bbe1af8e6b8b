#!/usr/bin/env bash
# Emulated WAN links for benchmarks: N network namespaces (pangea-n1 .. pangea-nN, addresses
# 10.77.0.1 .. 10.77.0.N on interface wan0) joined by veth pairs to a bridge that lives in its
# own namespace (pangea-sw), so the machine's own network is never touched. Every node's link is
# rate-limited with tc tbf in both directions, like a full-duplex access link. (This kernel has
# no netem, so latency is not emulated; see docs/plugins/transport.md.) No route leaves
# 10.77.0.0/24: traffic stays between the namespaces.
#
#   bench/wan.sh up N [--rate 200mbit] [--sites --trunk-rate 100mbit] [--lanes L --lane-rate 50mbit]
#                                         create (replacing an earlier set); with --sites, odd
#                                         nodes sit at site A and even ones at site B, the two
#                                         sites' bridges joined by one shared trunk link shaped
#                                         to --trunk-rate (for the measured ring order); with
#                                         --lanes, node i also has 10.77.k.i for k = 1..L-1 on
#                                         wan0, and each address's traffic is held to
#                                         --lane-rate within the node's --rate (htb): a WAN
#                                         where one flow gets less than the link, so parallel
#                                         rings (pangea bench allreduce --rings) add up
#   bench/wan.sh down N                   remove
#   bench/wan.sh status                   list what exists
#
# Root only.
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 ]] || usage
command=$1; shift
if [[ $(id -u) -ne 0 ]]; then
    echo "error: bench/wan.sh creates network namespaces and needs root (run it with sudo)" >&2
    exit 1
fi
command -v ip >/dev/null && command -v tc >/dev/null || { echo "error: needs ip and tc (apt-get install iproute2)" >&2; exit 1; }

down() {
    local n=$1
    for i in $(seq 1 "$n"); do ip netns del "pangea-n$i" 2>/dev/null || true; done
    ip netns del pangea-sw 2>/dev/null || true
}

case $command in
up)
    [[ $# -ge 1 ]] || usage
    n=$1; shift
    rate=200mbit sites=false trunk_rate=100mbit lanes=1 lane_rate=
    while [[ $# -gt 0 ]]; do
        case $1 in
            --rate) rate=$2; shift 2 ;;
            --sites) sites=true; shift ;;
            --trunk-rate) trunk_rate=$2; shift 2 ;;
            --lanes) lanes=$2; shift 2 ;;
            --lane-rate) lane_rate=$2; shift 2 ;;
            *) usage ;;
        esac
    done
    [[ $n =~ ^[0-9]+$ && $n -ge 2 && $n -le 64 ]] || { echo "error: N must be 2..64, got '$n'" >&2; exit 2; }
    [[ $lanes =~ ^[0-9]+$ && $lanes -ge 1 && $lanes -le 64 ]] || { echo "error: --lanes must be 1..64, got '$lanes'" >&2; exit 2; }
    if (( lanes > 1 )) && [[ -z $lane_rate ]]; then echo "error: --lanes needs --lane-rate (one flow's rate)" >&2; exit 2; fi
    down 64
    trap 'echo "error: setup failed; removing what was made" >&2; down 64' ERR
    # burst 256kb / latency 50ms: one TCP stream reaches ~95% of the rate (the rest is headers).
    shape="tbf rate $rate burst 256kb latency 50ms"
    ip netns add pangea-sw
    ip -n pangea-sw link set lo up
    ip -n pangea-sw link add br0 type bridge
    ip -n pangea-sw link set br0 up
    if $sites; then
        ip -n pangea-sw link add br1 type bridge
        ip -n pangea-sw link set br1 up
        ip -n pangea-sw link add trunk0 type veth peer name trunk1
        ip -n pangea-sw link set trunk0 master br0
        ip -n pangea-sw link set trunk1 master br1
        ip -n pangea-sw link set trunk0 up
        ip -n pangea-sw link set trunk1 up
        ip netns exec pangea-sw tc qdisc replace dev trunk0 root tbf rate "$trunk_rate" burst 256kb latency 50ms
        ip netns exec pangea-sw tc qdisc replace dev trunk1 root tbf rate "$trunk_rate" burst 256kb latency 50ms
    fi
    for i in $(seq 1 "$n"); do
        ip netns add "pangea-n$i"
        ip link add wan0 netns "pangea-n$i" type veth peer name "port$i" netns pangea-sw
        bridge=br0
        if $sites && (( i % 2 == 0 )); then bridge=br1; fi
        ip -n pangea-sw link set "port$i" master "$bridge"
        ip -n pangea-sw link set "port$i" up
        ip -n "pangea-n$i" link set lo up
        ip -n "pangea-n$i" addr add "10.77.0.$i/24" dev wan0
        ip -n "pangea-n$i" link set wan0 up
        if (( lanes == 1 )); then
            ip netns exec "pangea-n$i" tc qdisc replace dev wan0 root $shape     # upload
            ip netns exec pangea-sw tc qdisc replace dev "port$i" root $shape    # download
            continue
        fi
        for k in $(seq 1 $((lanes - 1))); do ip -n "pangea-n$i" addr add "10.77.$k.$i/24" dev wan0; done
        # The link (class 1:1) at --rate; lane k (class 1:1k, by the node's address of lane k:
        # its source going up, its destination coming down) at --lane-rate within it.
        for side in "pangea-n$i wan0 src" "pangea-sw port$i dst"; do
            read -r ns dev direction <<<"$side"
            ip netns exec "$ns" tc qdisc replace dev "$dev" root handle 1: htb default 10
            ip netns exec "$ns" tc class add dev "$dev" parent 1: classid 1:1 htb rate "$rate" ceil "$rate" burst 256kb quantum 60000
            for k in $(seq 0 $((lanes - 1))); do
                ip netns exec "$ns" tc class add dev "$dev" parent 1:1 classid "1:$((10 + k))" htb rate "$lane_rate" \
                    ceil "$lane_rate" burst 256kb quantum 60000
                ip netns exec "$ns" tc filter add dev "$dev" parent 1: protocol ip prio 1 u32 \
                    match ip "$direction" "10.77.$k.$i/32" classid "1:$((10 + k))"
            done
        done
    done
    echo "up: $n nodes at $rate: pangea-n1..pangea-n$n, 10.77.0.1..10.77.0.$n (interface wan0)"
    if (( lanes > 1 )); then echo "    lanes: 10.77.k.i for k = 0..$((lanes - 1)), each at most $lane_rate"; fi
    if $sites; then echo "    sites: odd nodes at A, even nodes at B, one shared trunk at $trunk_rate"; fi
    ;;
down)
    [[ $# -ge 1 ]] || usage
    down "$1"
    echo "down"
    ;;
status)
    ip netns list | grep '^pangea-' || echo "no pangea namespaces"
    ;;
*) usage ;;
esac
