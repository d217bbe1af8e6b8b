#!/usr/bin/env bash
# Checkpoints in S3 (storage/s3 against a real S3-compatible server, s3rver, behind the proxy
# of tests/lib/s3rver.sh that checks SigV4 signatures): the objects are really in the bucket and
# byte-identical to what storage/local writes (cross-checked with the aws CLI); a run SIGKILLed
# after a checkpoint resumes from S3 bit-identically; and (root: the server behind an 8 Mbit/s
# emulated link, bench/wan.sh) a process killed in the middle of an upload resumes from the
# previous complete checkpoint.
#   s3_checkpoint_test.sh <pangea binary> <source root>
# Exits 77 (skipped) without node/npm.
set -uo pipefail
pangea=$1 root=$2
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/../../lib/expect.sh"
source "$here/../../lib/tiny_run.sh"
source "$here/../../lib/s3rver.sh"
s3rver_install ""
work=$(mktemp -d)
netns_up=
trap 's3rver_stop; pkill -9 -f "$work" 2>/dev/null; [[ -n $netns_up ]] && "$root/bench/wan.sh" down 2 >/dev/null 2>&1; rm -rf "$work"' EXIT

tiny_run_manifest "$work/run.toml" s3run 9 1 8 '[checkpoint]
interval = 2'

bucket=checkpoints
s3rver_start "$work/s3" "$bucket"
s3=(--set storage.plugin=s3 --set storage.endpoint="$S3_ENDPOINT" --set storage.bucket="$bucket"
    --set storage.prefix=team/)
aws_s3() { aws --endpoint-url "$S3_ENDPOINT" "$@"; }

# 1. The same run into local storage and into S3.
"$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/local" >"$work/local.log" 2>&1
expect "a run checkpoints into S3" 0 "saved storage/s3 s3run/step-00000008/" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/s3run" "${s3[@]}"
want=$(json_field "$work/local/summary/node-0.json" params_hash)
expect_equal "storage does not change training" "$want" "$(json_field "$work/s3run/summary/node-0.json" params_hash)"
if command -v aws >/dev/null; then
    expect "the aws CLI sees the checkpoints in the bucket" 0 "team/s3run/step-00000008/node-0.json" -- \
        aws_s3 s3 ls --recursive "s3://$bucket/team/s3run/"
    for part in shared/model.safetensors.0-of-1 shared/outer_optimizer.bin.0-of-1 node-0/config.json node-0.json; do
        aws_s3 s3 cp --quiet "s3://$bucket/team/s3run/step-00000008/$part" "$work/from-s3-${part##*/}"
    done
    # The header and manifest name the storage; the tensors and states must be the same bytes.
    expect "model.safetensors in S3 is byte-identical to storage/local's" 0 "identical" -- \
        bash -c "cmp '$work/from-s3-model.safetensors.0-of-1' '$work/local/checkpoints/s3run/step-00000008/shared/model.safetensors.0-of-1' && echo identical"
    expect "outer_optimizer.bin too" 0 "identical" -- \
        bash -c "cmp '$work/from-s3-outer_optimizer.bin.0-of-1' '$work/local/checkpoints/s3run/step-00000008/shared/outer_optimizer.bin.0-of-1' && echo identical"
fi
expect "checkpoint list reads S3 (keep = 3)" 0 "8         " -- \
    "$pangea" checkpoint list "$work/run.toml" --set run.dir="$work/s3run" "${s3[@]}"
expect "inspect verifies every part in S3" 0 "complete, and every part matches its SHA-256" -- \
    "$pangea" checkpoint inspect "$work/run.toml" 6 --set run.dir="$work/s3run" "${s3[@]}"

# 2. SIGKILL after a checkpoint, resume from S3.
s3k=("${s3[@]/team\//killed/}")
"$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/killed" "${s3k[@]}" >"$work/killed.log" 2>&1 &
pid=$!
wait_for 120 grep -q "saved storage/s3 s3run/step-00000002/" "$work/killed.log"
kill -9 "$pid"; wait "$pid" 2>/dev/null
expect "the killed run resumes from S3" 0 "resuming from storage/s3 s3run/step-0000000" -- \
    "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/killed" "${s3k[@]}" --resume latest
expect_equal "... bit-identical to the uninterrupted run" "$want" "$(json_field "$work/killed/summary/node-0.json" params_hash)"

# 3. Killed mid-upload: the server behind an 8 Mbit/s link, so each checkpoint's upload takes
#    seconds (root and network namespaces needed).
if [[ $(id -u) -eq 0 ]] && "$root/bench/wan.sh" up 2 --rate 8mbit >/dev/null 2>&1; then
    netns_up=1
    s3rver_stop
    s3rver_start "$work/s3wan" "$bucket" pangea-n2 10.77.0.2
    s3w=(--set storage.plugin=s3 --set storage.endpoint="$S3_ENDPOINT" --set storage.bucket="$bucket")
    ip netns exec pangea-n1 "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/crash" "${s3w[@]}" \
        >"$work/crash.log" 2>&1 &
    pid=$!
    wait_for 180 bash -c "compgen -G '$work/s3wan/$bucket/s3run/step-00000004/shared/model.safetensors*' >/dev/null"
    kill -9 "$pid"; wait "$pid" 2>/dev/null
    expect "the upload in flight left step 4 incomplete (no header)" 0 "no header" -- \
        bash -c "compgen -G '$work/s3wan/$bucket/s3run/step-00000004/node-0.json*' >/dev/null || echo no header"
    expect "resume picks the previous complete checkpoint from S3" 0 "resuming from storage/s3 s3run/step-00000002/" -- \
        ip netns exec pangea-n1 "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/crash" "${s3w[@]}" --resume latest
    expect_equal "... and ends bit-identical" "$want" "$(json_field "$work/crash/summary/node-0.json" params_hash)"
else
    echo "note: not root or no network namespaces: the mid-upload kill is not run"
fi

expect_summary
