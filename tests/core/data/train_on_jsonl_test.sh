#!/usr/bin/env bash
# A run on a BPE-tokenized gzip JSONL corpus trains: generated prose as JSON lines, through
# cl100k_base's first 2000 ranks (a valid smaller BPE: every token's parts rank below it), two
# nodes; the held-out loss falls.
#   train_on_jsonl_test.sh <pangea binary> <source dir> <npm cache dir (tokenizer_parity_test.sh's)>
set -uo pipefail
pangea=$1 source=$2 js=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$source/tests/lib/expect.sh"
source "$source/tests/lib/tiny_run.sh"

source "$source/tests/lib/js_tiktoken.sh"
js_tiktoken_install "$js"
tiktoken_reference ranks cl100k_base "$work/cl100k.tiktoken"
awk '$2 < 2000' "$work/cl100k.tiktoken" >"$work/small.tiktoken"
# The reference's generated prose (seeded: the same on every machine, whatever the repository
# holds), in paragraphs of about 600 characters, one JSON object per line.
tiktoken_reference sample "$work/text" "$source"
node -e '
const fs = require("fs");
const text = fs.readFileSync(process.argv[1], "utf8");
for (let at = 0, n = 0; at < text.length; n++) {
  const end = Math.min(text.length, text.indexOf(" ", at + 600) < 0 ? text.length : text.indexOf(" ", at + 600));
  process.stdout.write(JSON.stringify({ id: n, body: text.slice(at, end) }) + "\n");
  at = end + 1;
}' "$work/text/1-prose.txt" | gzip >"$work/docs.jsonl.gz"

expect "data prepare reads gzip JSONL through a tiktoken file" 0 "vocabulary 2001, documents end with <|endoftext|> (2000)" -- \
    "$pangea" data prepare --tokenizer "$work/small.tiktoken" --pattern cl100k --document-end '<|endoftext|>=2000' \
    --field body -o "$work/data" "$work/docs.jsonl.gz"
expect "... and says how fast" 0 "MB/s per core" -- \
    "$pangea" data prepare --tokenizer "$work/small.tiktoken" --document-end '<|endoftext|>=2000' \
    --field body -o "$work/data2" "$work/docs.jsonl.gz"
expect "a missing field names file and line" 1 "docs.jsonl.gz: line 1: no field \"text\" (it has: body, id;" -- \
    "$pangea" data prepare --tokenizer "$work/small.tiktoken" -o "$work/data3" "$work/docs.jsonl.gz"
expect_rc "... and leaves no shard" 0 -- test -z "$(ls -A "$work/data3")"

tiny_run_manifest "$work/run.toml" jsonl 7 2 30
cat >>"$work/run.toml" <<TOML
[[data.sources]]
path = "$work/data"
TOML
expect "two nodes train on it" 0 "all nodes hold bit-identical parameters" -- \
    "$pangea" launch "$work/run.toml" --set run.dir="$work/run" --set diloco.inner_steps=10 --set train.lr=0.01
expect "... with the tokenizer's vocabulary" 0 "vocab 2001)" -- cat "$work/run/logs/node-0.log"
first=$(json_field "$work/run/metrics/node-0.jsonl" eval_loss)
last=$(json_field "$work/run/summary/node-0.json" final_eval_loss)
# (Untrained, the loss is ln(2001) = 7.6.)
expect_rc "the held-out loss falls ($first after one outer step, $last at the end, below 0.85 ln(2001) = 6.46)" 0 \
    -- awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a && b < 0.85 * log(2001)) }'
expect_summary
