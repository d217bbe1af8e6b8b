#!/usr/bin/env bash
# Checkpoints with real processes and real signals: a run SIGKILLed after a checkpoint and
# resumed ends bit-identical to one that never stopped (one node, and two nodes through
# `pangea launch`); a process killed in the middle of a save resumes from the previous complete
# checkpoint; a damaged part is refused by name; export writes a safetensors file that parses.
#   resume_test.sh <pangea binary> <fixtures dir>
set -uo pipefail
pangea=$1 fixtures=$(cd "$2" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/tiny_run.sh"
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT

tiny_run_manifest "$work/run.toml" resume 5 1 8 'ring_order = "rank"
[checkpoint]
interval = 2'

latest() { cat "$1/checkpoints/resume/latest" 2>/dev/null; }

# 1. One node, uninterrupted.
expect "an uninterrupted run saves checkpoints" 0 "saved storage/local resume/step-00000008/" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/full"
want=$(json_field "$work/full/summary/node-0.json" params_hash)

# 2. The same run SIGKILLed once the checkpoint of step 2 is in, then resumed.
"$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/killed" >"$work/killed.log" 2>&1 &
pid=$!
wait_for 120 bash -c "[[ \$(cat '$work/killed/checkpoints/resume/latest' 2>/dev/null) == step-0000000[2-6] ]]"
kill -9 "$pid"; wait "$pid" 2>/dev/null
from=$(latest "$work/killed")
expect "the killed run resumes from its latest checkpoint" 0 "resuming from storage/local resume/$from/" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/killed" --resume latest
got=$(json_field "$work/killed/summary/node-0.json" params_hash)
expect_equal "resumed from $from, the parameters are bit-identical to the uninterrupted run's" "$want" "$got"

# 3. Killed in the middle of a save (storage/local slowed down: each write sleeps 0.4 s).
slow=(--set storage.plugin=local --set storage.library="$fixtures/slow/libslow_local.so"
      --set storage.path="$work/crash/checkpoints")
"$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/crash" "${slow[@]}" >"$work/crash.log" 2>&1 &
pid=$!
wait_for 120 bash -c "[[ -f '$work/crash/checkpoints/resume/step-00000004/shared/model.safetensors.0-of-1' ]]"
kill -9 "$pid"; wait "$pid" 2>/dev/null
expect "the save in flight left no complete checkpoint of step 4" 0 "latest: step-00000002" -- \
    bash -c "echo latest: \$(cat '$work/crash/checkpoints/resume/latest'); [[ ! -f '$work/crash/checkpoints/resume/step-00000004/node-0.json' ]]"
expect "list shows only the complete checkpoint" 0 "2         " -- \
    "$pangea" checkpoint list "$work/run.toml" --set run.dir="$work/crash"
expect "resume picks the previous complete checkpoint" 0 "resuming from storage/local resume/step-00000002/" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/crash" --resume latest
expect_equal "and ends bit-identical too" "$want" "$(json_field "$work/crash/summary/node-0.json" params_hash)"
expect_equal "the resumed process's summary starts at step 2" 2 "$(json_field "$work/crash/summary/node-0.json" first_outer_step)"
expect_equal "... and counts the tokens it trained, 6 of the 8 rounds" \
    $(($(json_field "$work/full/summary/node-0.json" tokens) * 6 / 8)) "$(json_field "$work/crash/summary/node-0.json" tokens)"
expect "no temporary file of the killed save is left" 0 "partial: 0" -- \
    bash -c "echo partial: \$(ls '$work/crash/checkpoints/.partial' | wc -l)"

# 4. A damaged part is refused by name, by inspect and by resume.
part="$work/crash/checkpoints/resume/step-00000008/node-0/inner_optimizer.bin"
printf 'X' | dd of="$part" bs=1 seek=100 conv=notrunc 2>/dev/null
expect "inspect names the damaged part" 1 "node-0/inner_optimizer.bin: BAD: checkpoint part resume/step-00000008/node-0/inner_optimizer.bin is corrupt" -- \
    "$pangea" checkpoint inspect "$work/run.toml" latest --set run.dir="$work/crash"
expect "resume refuses it" 1 "inner_optimizer.bin is corrupt: its SHA-256 does not match" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/crash" --resume 8
expect "an absent step is named" 1 "checkpoint step-00000005 under 'resume/' is absent" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/crash" --resume 5

# 5. Export: safetensors and config.json that a reader of the format accepts.
expect "export writes the Hugging Face files" 0 "exported step 8" -- \
    "$pangea" checkpoint export "$work/run.toml" latest -o "$work/export" --set run.dir="$work/full"
expect "the safetensors file parses and its tensors tile the data" 0 "tensors ok" -- python3 - "$work/export" <<'PY'
import json, struct, sys, os
d = sys.argv[1]
raw = open(os.path.join(d, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
tensors = sorted((v["data_offsets"], k) for k, v in header.items() if k != "__metadata__")
end = 0
for (b, e), name in tensors:
    assert b == end, name
    end = e
assert end == len(raw) - 8 - n, (end, len(raw) - 8 - n)
config = json.load(open(os.path.join(d, "config.json")))
assert config["model_type"] == "llama"
assert ("lm_head.weight" in header) != config["tie_word_embeddings"], "lm_head.weight present iff untied"
print("tensors ok:", len(tensors))
PY

# 6. Every node lost at once: two nodes through `pangea launch`, all SIGKILLed after a
#    checkpoint, then `pangea launch --resume latest`: bit-identical to an uninterrupted launch.
#    (tests/core/checkpoint/kill_all_test.sh: three nodes, uneven progress, both backends.)
two=(--set mesh.nodes=2)
expect "two nodes, uninterrupted" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch "$work/run.toml" "${two[@]}" --set run.dir="$work/two-full"
want2=$(json_field "$work/two-full/summary/node-0.json" params_hash)
"$pangea" launch "$work/run.toml" "${two[@]}" --set run.dir="$work/two" >"$work/two.log" 2>&1 &
launcher=$!
wait_for 120 bash -c "[[ \$(cat '$work/two/checkpoints/resume/latest' 2>/dev/null) == step-0000000[2-6] ]]"
kill -9 "$launcher"
pkill -9 -f -- "run.dir=$work/two( |\$)"; wait "$launcher" 2>/dev/null
# Killed at once, one node may have saved its part of a later step than the other: `latest` is
# the newest step the whole run committed, and every node resumes from it.
expect "launch --resume latest carries every node on" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch "$work/run.toml" "${two[@]}" --set run.dir="$work/two" --resume latest
expect_equal "... bit-identical to the uninterrupted launch" "$want2" "$(json_field "$work/two/summary/node-1.json" params_hash)"
expect "the run's checkpoints hold the shared state once: one piece per node" 0 "pieces: 2" -- \
    bash -c "echo pieces: \$(ls '$work/two/checkpoints/resume/step-00000008/shared/' | grep -c '^model.safetensors')"

expect_summary
