#!/usr/bin/env bash
# Real processes, real signals: four `pangea bench allreduce` nodes on loopback; one is killed
# with SIGKILL (or frozen with SIGSTOP) in the middle of the all-reduces. Every survivor must
# fail with a peer-lost status within the stall timeout, and the whole run must end (no hang).
# (The ring works in place: the mesh fills the buffer again before it retries.)
#   allreduce_kill_test.sh <pangea binary> KILL|STOP
set -uo pipefail
pangea=$1 signal=$2
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
work=$(mktemp -d)
trap 'kill -9 $(pgrep -P "$parent" 2>/dev/null) "$parent" 2>/dev/null; rm -rf "$work"' EXIT

stall_ms=3000
"$pangea" bench allreduce --nodes 4 --sizes 64 --config none --repeat 1000 --stall-timeout-ms "$stall_ms" \
    >"$work/out" 2>"$work/err" &
parent=$!
# Wait until rank 0 has printed the header: the ring is formed and all-reduces are running.
for _ in $(seq 1 300); do grep -q '^config' "$work/out" 2>/dev/null && break; sleep 0.1; done
sleep 1
victim=$(pgrep -P "$parent" | sort -n | sed -n 3p)  # the third node started: rank 2
[[ -n $victim ]] || { echo "FAIL: no node processes found"; cat "$work/err"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
start=$(now_ms)
kill -"$signal" "$victim"
# The survivors must give up on their own: the three failure lines appear...
for _ in $(seq 1 300); do [[ $(grep -c "failed after" "$work/err") -ge 3 ]] && break; sleep 0.1; done
reported=$(( $(now_ms) - start ))
# ... and the run ends, the parent killing a frozen node once the others have failed.
for _ in $(seq 1 400); do kill -0 "$parent" 2>/dev/null || break; sleep 0.1; done
ended=$(( $(now_ms) - start ))
wait "$parent"; code=$?

expect_rc "the run ends with an error" 0 -- test "$code" -ne 0
expect_rc "the survivors fail within the stall timeout plus slack (took ${reported} ms)" 0 -- test "$reported" -lt 9000
expect_rc "the run ends (took ${ended} ms)" 0 -- test "$ended" -lt 25000
for rank in 0 1 3; do
    expect "rank $rank reports its failure" 0 "failed after" -- grep "^rank $rank: all-reduce of 64 MiB with none failed" "$work/err"
done
if [[ $signal == KILL ]]; then
    expect "the killed node's neighbours see the peer lost" 0 "PANGEA_ERR_PEER_LOST" -- grep -E "^rank (1|3):" "$work/err"
    expect "the parent names the killed node" 0 "node 2 exited with status 137" -- cat "$work/err"
else
    # Whichever survivor's stall timer fires first reports the stall; the others then see its abort.
    expect "a survivor detects the stall" 0 "stalled" -- grep -E "^rank (0|1|3):" "$work/err"
    expect "the parent kills the frozen node" 0 "node 2 still running" -- cat "$work/err"
fi
expect_summary
