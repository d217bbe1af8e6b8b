#!/usr/bin/env bash
# `pangea data prepare` with BPE tokenizers gives js-tiktoken's ids (npm, an independent
# implementation), token for token, on about 4 MB of code, prose, Unicode, whitespace runs and
# digits: cl100k_base and o200k_base as tiktoken ranks files, and cl100k_base as a Hugging Face
# tokenizer.json built from the same ranks. Prints the MB/s of each run.
#   tokenizer_parity_test.sh <pangea binary> <source dir> <npm cache dir>
set -euo pipefail
pangea=$1 source=$2 js=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

source "$source/tests/lib/js_tiktoken.sh"
js_tiktoken_install "$js"

tiktoken_reference sample "$work/text" "$source"
texts=("$work"/text/*.txt)
failed=0
check() {  # name, tokenizer file, pattern
    local name=$1 file=$2 pattern=$3 out="$work/out-$RANDOM"
    "$pangea" data prepare --tokenizer "$file" --pattern "$pattern" -o "$out" "${texts[@]}" | sed 's/^/  /'
    if tiktoken_reference compare "$name" "$out/shard-00000.tok" "${texts[@]}"; then
        echo "ok: $name ($(basename "$file"))"
    else
        echo "FAILED: $name ($(basename "$file"))"; failed=1
    fi
}
tiktoken_reference ranks cl100k_base "$work/cl100k_base.tiktoken"
check cl100k_base "$work/cl100k_base.tiktoken" cl100k
tiktoken_reference ranks o200k_base "$work/o200k_base.tiktoken"
check o200k_base "$work/o200k_base.tiktoken" o200k
tiktoken_reference tokenizer-json cl100k_base "$work/tokenizer.json"
check cl100k_base "$work/tokenizer.json" cl100k
exit $failed
