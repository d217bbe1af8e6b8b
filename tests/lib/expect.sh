# Assertions for the shell tests. Source it, call expect for each case, end with expect_summary.
#   expect <description> <exit code wanted> <text wanted in stdout+stderr> -- command...
#   expect_rc <description> <exit code wanted> -- command...     (the exit code only)
#   expect_equal <description> <wanted> <got>                    (the same text, not empty)
# An empty wanted text fails: grep -F "" matches anything, so a value that was never computed
# would pass.
expect_passes=0
expect_failures=0

expect_pass() { echo "ok: $1"; expect_passes=$((expect_passes + 1)); }
expect_fail() { echo "FAIL: $1"; expect_failures=$((expect_failures + 1)); }

expect() {
    local what=$1 want_rc=$2 want_text=$3; shift 4
    if [[ -z $want_text ]]; then
        expect_fail "$what: the expected text is empty (use expect_rc for the exit code alone)"
        return
    fi
    local out rc
    out=$("$@" 2>&1); rc=$?
    if [[ $rc -ne $want_rc ]] || ! grep -qF -- "$want_text" <<<"$out"; then
        expect_fail "$what: exit $rc (wanted $want_rc), output lacks '$want_text':"
        echo "$out" | sed 's/^/    /'
    else
        expect_pass "$what"
    fi
}

expect_rc() {
    local what=$1 want_rc=$2; shift 3
    local out rc
    out=$("$@" 2>&1); rc=$?
    if [[ $rc -ne $want_rc ]]; then
        expect_fail "$what: exit $rc (wanted $want_rc):"
        echo "$out" | sed 's/^/    /'
    else
        expect_pass "$what"
    fi
}

expect_equal() {
    local what=$1 want=$2 got=$3
    if [[ -z $want ]]; then
        expect_fail "$what: the expected value is empty (got '$got')"
    elif [[ $want != "$got" ]]; then
        expect_fail "$what: got '$got', wanted '$want'"
    else
        expect_pass "$what"
    fi
}

# Prints "N passed, M failed" and returns non-zero if anything failed.
expect_summary() {
    echo "$expect_passes passed, $expect_failures failed"
    [[ $expect_failures -eq 0 ]]
}

# The value of "key" in a flat JSON file (a node's summary or status): json_field FILE KEY.
json_field() { grep -o "\"$2\":[^,}]*" "$1" | head -1 | cut -d: -f2 | tr -d '"'; }

# Waits up to $1 seconds for process $2 (a child of this shell) to end, killing it then; returns
# its exit code. (Not inside expect_rc: a subshell cannot wait for this shell's children.)
wait_exit() {
    local limit=$1 pid=$2 i
    for ((i = 0; i < limit * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "process $pid still running after $limit s; killing it"
        kill -9 "$pid"
    fi
    wait "$pid"
}

# Waits up to $1 seconds for a command to succeed; says what it waited for when it gives up.
wait_for() {
    local limit=$1 i; shift
    for ((i = 0; i < limit * 10; i++)); do "$@" && return 0; sleep 0.1; done
    echo "FAIL: waited $limit s for: $*"
    return 1
}
