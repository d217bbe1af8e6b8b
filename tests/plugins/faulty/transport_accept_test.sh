#!/usr/bin/env bash
# A transport whose accept fails for good on node 1 of three (transport/faulty wrapping
# transport/tcp): its peers cannot reach it, and the run must end with an error in bounded time,
# as when connect fails (transport_test.sh). Meanwhile the node must not spin on the failing
# accept: the core's acceptor retries at once and logs each failure, so without a pause it
# writes hundreds of thousands of lines a second. This test watches node 1 for 2 s: fewer than
# 100 accept failures may be logged there (one per 20 ms).
#   transport_accept_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
write_manifest 3
dir=$work/accept
"$pangea" launch "$work/run.toml" --set run.dir="$dir" --set transport.plugin=faulty --set transport.inner=tcp \
    --set transport.node=1 --set transport.fail=accept --set transport.times=-1 >"$work/accept.out" 2>&1 &
launcher=$!
running=$launcher
wait_for 60 grep -qs "faulty: injected failure of accept" "$dir/logs/node-1.log"
sleep 2
failures=$(grep -c "accept failed with PANGEA_ERR_IO: faulty: injected failure of accept" "$dir/logs/node-1.log")
{ kill_tree "$launcher"; wait "$launcher"; } 2>/dev/null
running=
expect_rc "node 1 logs the plugin's error" 0 -- test "$failures" -gt 0
expect_rc "node 1 does not spin on the failing accept ($failures failures logged in about 2 s)" 0 -- test "$failures" -lt 100
expect_summary
