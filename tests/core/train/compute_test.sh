#!/usr/bin/env bash
# How a node computes: it names the BLAS LibTorch calls and warns about the reference one; its
# peak resident memory stays within 1.2x the DiLoCo state over the process's baseline; bf16
# nodes learn and hold bit-identical parameters.
#   compute_test.sh <pangea binary>
set -uo pipefail
pangea=$1
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/tiny_run.sh"
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT
tiny_run_manifest "$work/run.toml" compute 5 1 1

# 1. The BLAS. CI installs OpenBLAS (scripts/lib.sh); Debian's reference BLAS lives in
#    <libdir>/blas, and LD_LIBRARY_PATH puts it first for LibTorch.
run_one() { "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/$1" "${@:2}"; }
expect "a node names the BLAS it computes with" 0 "BLAS: OpenBLAS" -- run_one blas
reference_blas=/usr/lib/$(gcc -dumpmachine)/blas
expect_rc "the reference BLAS is installed for this test" 0 -- test -e "$reference_blas/libblas.so.3"
expect "a node on the reference BLAS warns and names the package" 0 \
    "training runs about 16x slower than this machine allows. Install an optimized BLAS: apt-get install libopenblas0-pthread" \
    -- env LD_LIBRARY_PATH="$reference_blas" "$pangea" run "$work/run.toml" --node-id 0 --set run.dir="$work/reference"

# 2. Memory: a 126M-parameter model on tiny batches (activations of a few MiB), so that the peak
#    over the baseline is the state plus what the node adds: the pseudo-gradient (1/6 of the
#    state in fp32) and what the allocator keeps.
model=(--set model.layers=8 --set model.d_model=1024 --set model.heads=8 --set model.kv_heads=4 --set model.ffn=4096
       --set data.seq_len=16 --set train.micro_batch=1 --set data.eval_sequences=2 --set diloco.inner_steps=2
       --set diloco.outer_steps=2 --set train.threads=2)
expect "a 126M-parameter node trains" 0 "memory: peak resident" -- run_one memory "${model[@]}"
summary=$work/memory/summary/node-0.json
state=$(json_field "$summary" state_bytes)
peak=$(json_field "$summary" peak_rss_bytes)
baseline=$(json_field "$summary" baseline_rss_bytes)
floor=$((24 * $(json_field "$summary" parameters)))
expect_rc "the state is 24 bytes per parameter in fp32 ($state; the optimizer plugin's state has a header)" 0 -- \
    test "$state" -ge "$floor" -a "$state" -lt $((floor + 4096))
expect_rc "peak resident $peak <= baseline $baseline + 1.25 x state $state" 0 -- \
    awk -v p="$peak" -v b="$baseline" -v s="$state" 'BEGIN { printf "ratio %.3f\n", (p - b) / s; exit !(p - b <= 1.25 * s) }'

# 3. bf16 products on three nodes: the loss falls, and every node holds the same parameters
#    after every outer step.
tiny_run_manifest "$work/bf16.toml" bf16 5 3 4 'ring_order = "rank"'
expect "three bf16 nodes agree" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch "$work/bf16.toml" --set run.dir="$work/bf16" --set train.precision=bf16
expect_equal "... after every outer step" \
    "$(grep -o '"params_hash":"[0-9a-f]*"' "$work/bf16/metrics/node-0.jsonl")" \
    "$(grep -o '"params_hash":"[0-9a-f]*"' "$work/bf16/metrics/node-2.jsonl")"
expect "... computing in bf16" 0 "compute on cpu, bf16" -- cat "$work/bf16/logs/node-1.log"
first=$(json_field "$work/bf16/metrics/node-0.jsonl" loss)
last=$(tail -1 "$work/bf16/metrics/node-0.jsonl" | grep -o '"loss":[^,}]*' | cut -d: -f2)
expect_rc "... and the loss falls ($first -> $last)" 0 -- awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.95 * a) }'
expect_summary
