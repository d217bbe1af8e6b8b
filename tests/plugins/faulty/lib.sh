# Shared by the tests of the faulty plugins (tests/plugins/faulty/*_test.sh): a small run
# manifest, commands run with a time limit, and the parameter hashes nodes report. Source it
# after setting `pangea`; it creates $work and removes it (and every process started through
# `bounded`) on exit. KEEP=1 keeps $work.
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/tiny_run.sh"
work=$(mktemp -d)
running=  # the process `bounded` (or a test) started and has not reaped yet

kill_tree() {  # a process and its descendants, by pid
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
    kill -9 "$1" 2>/dev/null
}
cleanup() {
    [[ -n $running ]] && kill_tree "$running"
    if [[ -n ${KEEP:-} ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The run every test varies with --set: the tiny model with one layer, 3 inner and 4 outer
# steps, int8 on the wire. write_manifest NODES
write_manifest() {
    tiny_run_manifest "$work/run.toml" faulty 7 "$1" 4 'ring_order = "rank"
[compress]
plugin = "int8"'
}

# bounded LIMIT NAME -- command...: runs the command with its output in $work/NAME.out for at
# most LIMIT seconds (then kills it and its children, and counts a failure). Sets $rc (the exit
# status; 137 when killed) and $took (seconds).
bounded() {
    local limit=$1 name=$2; shift 3
    local start=$SECONDS pid
    "$@" >"$work/$name.out" 2>&1 &
    pid=$!
    running=$pid
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS - start > limit)); then
            echo "FAIL: $name: still running after $limit s (a hang); its output ends:"
            tail -5 "$work/$name.out" | sed 's/^/    /'
            expect_failures=$((expect_failures + 1))
            kill_tree "$pid"
            break
        fi
        sleep 0.2
    done
    wait "$pid"
    rc=$?
    running=
    took=$((SECONDS - start))
}

# The params_hash after every outer step in a node's metrics, one per line: hashes DIR NODE
hashes() { grep -o '"outer_step":[0-9]*\|"params_hash":"[0-9a-f]*"' "$1/metrics/node-$2.jsonl" | paste -d' ' - -; }

# Passes when $rc is WANT: check_rc WHAT WANT
check_rc() { expect_rc "$1 (exit $rc after $took s)" 0 -- test "$rc" -eq "$2"; }
