# Assertions for the shell tests. Source it, call expect for each case, end with expect_summary.
#   expect <description> <exit code wanted> <text wanted in stdout+stderr> -- command...
expect_passes=0
expect_failures=0

expect() {
    local what=$1 want_rc=$2 want_text=$3; shift 4
    local out rc
    out=$("$@" 2>&1); rc=$?
    if [[ $rc -ne $want_rc ]] || ! grep -qF -- "$want_text" <<<"$out"; then
        echo "FAIL: $what: exit $rc (wanted $want_rc), output lacks '$want_text':"
        echo "$out" | sed 's/^/    /'
        expect_failures=$((expect_failures + 1))
    else
        echo "ok: $what"
        expect_passes=$((expect_passes + 1))
    fi
}

# Prints "N passed, M failed" and returns non-zero if anything failed.
expect_summary() {
    echo "$expect_passes passed, $expect_failures failed"
    [[ $expect_failures -eq 0 ]]
}

# The value of "key" in a flat JSON file (a node's summary or status): json_field FILE KEY.
json_field() { grep -o "\"$2\":[^,}]*" "$1" | head -1 | cut -d: -f2 | tr -d '"'; }

# Waits up to $1 seconds for a command to succeed; says what it waited for when it gives up.
wait_for() {
    local limit=$1; shift
    for ((i = 0; i < limit * 10; i++)); do "$@" && return 0; sleep 0.1; done
    echo "FAIL: waited $limit s for: $*"
    return 1
}
