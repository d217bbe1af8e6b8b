# For tests over emulated links (bench/wan.sh). Source it, then call:
#   require_network_namespaces   exits 77 (skipped) unless this process may create network
#                                namespaces and shape links: root, iproute2, a kernel that allows it
require_network_namespaces() {
    if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
        echo "skipped: needs root and iproute2 (ip, tc) for network namespaces"
        exit 77
    fi
    if ! ip netns add "pangea-probe-$$" 2>/dev/null; then
        echo "skipped: this machine does not allow creating network namespaces"
        exit 77
    fi
    ip netns del "pangea-probe-$$"
}
