#!/usr/bin/env bash
# Forgetting --resume never loses a run: a node that would save checkpoints afresh where the
# run's checkpoints already are refuses, says how to resume or start over, and leaves the storage
# as it was; --fresh deletes them and starts over; a run that saves none is not stopped.
#   fresh_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/tiny_run.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tiny_run_manifest "$work/run.toml" fresh 3 1 2 '[checkpoint]
interval = 1'
run_node() { "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/run" "$@"; }
store_state() { (cd "$work/run/checkpoints" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum; }

expect "a first run saves its checkpoints" 0 "saved storage/local fresh/step-00000002/" -- run_node
before=$(store_state)
expect "starting afresh over them is refused, naming the way out" 1 \
    "already holds checkpoints of run 'fresh' under fresh/ (" -- run_node
expect "the refusal says how to resume and how to start over" 1 "--resume latest, or start over with --fresh" -- run_node
expect_equal "and nothing in the storage changed" "$before" "$(store_state)"
expect "pangea launch refuses likewise, on every node" 1 "start over with --fresh" -- \
    "$pangea" launch "$work/run.toml" --set run.dir="$work/run"
expect_equal "still nothing changed" "$before" "$(store_state)"
expect "a run that saves no checkpoints is not stopped by them" 0 "done: eval loss" -- \
    run_node --set checkpoint.interval=0 --set run.dir="$work/run"
expect "--fresh deletes them and starts over" 0 "--fresh: deleted" -- run_node --fresh
expect_equal "the new run's checkpoints are there" "step-00000002" "$(cat "$work/run/checkpoints/fresh/latest")"
expect "--fresh with --resume is a usage error" 108 "--resume excludes --fresh" -- run_node --fresh --resume latest
expect "--resume latest still resumes" 0 "resuming from storage/local fresh/step-00000002/" -- \
    run_node --resume latest
expect_summary
