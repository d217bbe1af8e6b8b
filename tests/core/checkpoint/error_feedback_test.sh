#!/usr/bin/env bash
# Error feedback's residual in checkpoints, with real processes and real signals: two nodes that
# compress with int8 in gather aggregation (int8 asks for error feedback) save each node's
# residual beside its inner optimizer; all SIGKILLed after a checkpoint and resumed with
# `--resume latest`, they end bit-identical to a launch that never stopped (a residual lost or
# mixed up between the nodes would change the next contributions). A residual of the wrong size
# is refused by name.
#   error_feedback_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/tiny_run.sh"
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT

tiny_run_manifest "$work/run.toml" feedback 9 2 8 'ring_order = "rank"
aggregation = "gather"
[compress]
plugin = "int8"
[checkpoint]
interval = 2'

expect "two nodes with error feedback, uninterrupted" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch "$work/run.toml" --set run.dir="$work/full"
want=$(json_field "$work/full/summary/node-0.json" params_hash)
step="$work/full/checkpoints/feedback/step-00000008"
expect "each node's residual is in the checkpoint, one fp32 per parameter" 0 "residuals: 2 non-zero" -- python3 - "$step" <<'PY'
import json, os, struct, sys
step = sys.argv[1]
nonzero = 0
for node in (0, 1):
    header = json.load(open(os.path.join(step, f"node-{node}.json")))
    raw = open(os.path.join(step, f"node-{node}", "error_feedback.bin"), "rb").read()
    assert len(raw) == 4 * header["model"]["parameters"], (len(raw), header["model"]["parameters"])
    assert any(p["name"] == f"node-{node}/error_feedback.bin" for p in header["parts"])
    values = struct.unpack(f"<{len(raw) // 4}f", raw)
    nonzero += any(v != 0 for v in values)
assert open(os.path.join(step, "node-0", "error_feedback.bin"), "rb").read() != \
       open(os.path.join(step, "node-1", "error_feedback.bin"), "rb").read(), "the nodes' residuals are their own"
print(f"residuals: {nonzero} non-zero")
PY

"$pangea" launch "$work/run.toml" --set run.dir="$work/killed" >"$work/killed.log" 2>&1 &
launcher=$!
wait_for 120 bash -c "[[ \$(cat '$work/killed/checkpoints/feedback/latest' 2>/dev/null) == step-0000000[2-6] ]]"
kill -9 "$launcher"
pkill -9 -f -- "run.dir=$work/killed( |\$)"; wait "$launcher" 2>/dev/null
expect "launch --resume latest takes up each node's residual" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch "$work/run.toml" --set run.dir="$work/killed" --resume latest
expect_equal "... and ends bit-identical to the uninterrupted launch" "$want" \
    "$(json_field "$work/killed/summary/node-1.json" params_hash)"

# A residual cut short (and its header's size and hash made to match): refused by name.
cp -r "$work/full" "$work/cut"
python3 - "$work/cut/checkpoints/feedback/step-00000008" <<'PY'
import hashlib, json, os, sys
step = sys.argv[1]
path = os.path.join(step, "node-0", "error_feedback.bin")
raw = open(path, "rb").read()[:-4]
open(path, "wb").write(raw)
header_path = os.path.join(step, "node-0.json")
header = json.load(open(header_path))
for part in header["parts"]:
    if part["name"] == "node-0/error_feedback.bin":
        part["bytes"], part["sha256"] = len(raw), hashlib.sha256(raw).hexdigest()
open(header_path, "w").write(json.dumps(header) + "\n")
PY
expect "a residual of the wrong size is refused by name" 1 "node-0/error_feedback.bin is" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/cut" --set mesh.nodes=1 --resume 8

expect_summary
