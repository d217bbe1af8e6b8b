#!/usr/bin/env bash
# The pangea command line, as a user runs it.
#   cli_test.sh <pangea binary> <source dir> <fixtures dir>
set -uo pipefail
pangea=$1 source=$2 fixtures=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/../lib/expect.sh"

expect "version names the plugin ABI" 0 "(plugin ABI 1.4)" -- "$pangea" version
expect "plugins list shows the built-ins" 0 "compress  none            1.0.0     1.4" -- "$pangea" plugins list
expect "plugins list shows the optimizer" 0 "optim     nesterov" -- "$pangea" plugins list
expect "plugins show prints settings with defaults and ranges" 0 "momentum          float    default 0.9  [0, 0.999999]" -- \
    "$pangea" plugins show optim nesterov
expect "plugins show says which ABI version the handshake settled on" 0 "speaks plugin ABI 1.4 with this host (ABI 1.4)" -- \
    "$pangea" plugins show optim nesterov
expect "plugins show of an unknown plugin lists what exists" 1 "no optim plugin named 'adamw'. Available: faulty, nesterov." -- \
    "$pangea" plugins show optim adamw
expect "plugins show of an unknown kind" 1 "unknown plugin kind 'compression'" -- "$pangea" plugins show compression none
expect "manifest check accepts the embedded default" 0 "examples/local.toml: OK" -- \
    "$pangea" manifest check "$source/examples/local.toml"
expect "manifest check prints the resolved configuration" 0 'plugin = "nesterov"' -- \
    "$pangea" manifest check "$source/examples/local.toml"
expect "--set overrides and is shown as the origin" 0 "inner_steps = 50                         # --set diloco.inner_steps=50" -- \
    "$pangea" manifest check "$source/examples/local.toml" --set diloco.inner_steps=50
expect "environment overrides" 0 "# environment PANGEA_DILOCO_OUTER_STEPS" -- \
    env PANGEA_DILOCO_OUTER_STEPS=3 "$pangea" manifest check "$source/examples/local.toml"
expect "a bad --set is an error" 1 "error: --set diloco.inner_steps=0: [diloco] inner_steps: expected an integer in [1, 1000000000], got 0" -- \
    "$pangea" manifest check "$source/examples/local.toml" --set diloco.inner_steps=0

printf '[run]\nseed = -1\n[compress]\nplugin = "int9"\n' >"$work/bad.toml"
expect "manifest errors name file, line and column" 1 "error: $work/bad.toml:2:1: [run] seed: expected an integer in [0," -- \
    "$pangea" manifest check "$work/bad.toml"
expect "every manifest error is printed" 1 "error: $work/bad.toml:4:1: [compress] plugin \"int9\": no compress plugin named 'int9'" -- \
    "$pangea" manifest check "$work/bad.toml"
expect "a missing manifest is a clear error" 1 "error: $work/none.toml: cannot open the manifest (no such file)" -- \
    "$pangea" manifest check "$work/none.toml"
expect "PANGEA_PLUGIN_PATH adds plugins" 0 "compress  dup " -- env PANGEA_PLUGIN_PATH="$fixtures/dups" "$pangea" plugins list
expect "plugins list reports rejected libraries" 0 "libdup_b.so: duplicate plugin compress/dup" -- \
    env PANGEA_PLUGIN_PATH="$fixtures/dups" "$pangea" plugins list
expect "run checks the node id" 1 "error: --node-id 7 is not below [mesh] nodes = 4" -- \
    "$pangea" run "$source/examples/local.toml" --node-id 7

# Bad manifests for the training layer fail before training, naming the key and where it was set.
printf '[model]\npreset = "huge"\n' >"$work/preset.toml"
expect "an unknown preset lists the presets" 1 "[model] preset: expected one of: tiny | small | 1b | 10b, got \"huge\"" -- \
    "$pangea" manifest check "$work/preset.toml"
printf '[model]\nheads = 3\n' >"$work/heads.toml"
expect "heads must divide d_model" 1 "heads.toml:2:1: [model] (preset tiny) d_model 128 is not divisible by heads 3" -- \
    "$pangea" manifest check "$work/heads.toml"
printf '[model]\nkv_heads = 3\n' >"$work/kv.toml"
expect "kv_heads must divide heads" 1 "kv.toml:2:1: [model] (preset tiny) heads 4 is not divisible by kv_heads 3" -- \
    "$pangea" launch "$work/kv.toml"
printf '[[data.sources]]\npath = "missing.tok"\n' >"$work/missing.toml"
expect "a missing data file is named with its manifest line" 1 "missing.toml:1:1: [[data.sources]] path \"$work/missing.tok\": no such file or directory" -- \
    "$pangea" launch "$work/missing.toml"
printf '[[data.sources]]\npath = "builtin:prose"\nweight = 0\n[[data.sources]]\npath = "builtin:code"\nweight = 0\n' >"$work/weights.toml"
expect "weights must sum to more than 0" 1 "the weights of [[data.sources]] sum to 0.0; they must sum to more than 0" -- \
    "$pangea" manifest check "$work/weights.toml"
printf '[[data.sources]]\npath = "builtin:poetry"\n' >"$work/builtin.toml"
expect "an unknown built-in source lists the built-ins" 1 "unknown built-in corpus source 'poetry'; built-in sources are: prose, code, arithmetic, lists" -- \
    "$pangea" manifest check "$work/builtin.toml"
printf 'not a shard' >"$work/bad.tok"
printf '[[data.sources]]\npath = "bad.tok"\n' >"$work/badshard.toml"
expect "a file that is not a shard is rejected" 1 "bad.tok: 11 bytes is too short for a token shard" -- \
    "$pangea" manifest check "$work/badshard.toml"

# Data preparation: text in, shards out, and a manifest that trains on them checks clean.
printf 'hello world\n' >"$work/a.txt"
printf 'second document\n' >"$work/b.txt"
expect "data prepare writes shards" 0 "wrote 1 shard (30 tokens, byte tokenizer, vocabulary 257, documents end with 256)" -- \
    "$pangea" data prepare -o "$work/shards" "$work/a.txt" "$work/b.txt"
expect "data prepare of a built-in source" 0 "wrote 3 shards" -- \
    "$pangea" data prepare -o "$work/builtin" --builtin arithmetic --builtin-bytes 30000 --shard-tokens 12000
printf '[[data.sources]]\npath = "builtin"\nweight = 1\n[data]\nseq_len = 16\n' >"$work/shards.toml"
expect "prepared shards are accepted as a source" 0 "OK (model tiny: 820.5k parameters)" -- \
    "$pangea" manifest check "$work/shards.toml"
# A node of a multi-node run: what is wrong with its mesh settings is named, and it never waits
# forever for a coordinator that is not there.
node=("$pangea" run "$source/examples/local.toml" --node-id 0 --set run.dir="$work/node")
expect "a node needs a coordinator or launch" 1 "[mesh] coordinator is not set" -- "${node[@]}"
expect "an unreadable secret file is named" 1 "[mesh] secret_file $work/none cannot be read" -- \
    "${node[@]}" --set mesh.coordinator=127.0.0.1:1 --set mesh.secret_file="$work/none"
expect "an unset secret variable is named" 1 "secret_env names PANGEA_CLI_TEST_UNSET, which is not set" -- \
    "${node[@]}" --set mesh.coordinator=127.0.0.1:1 --set mesh.secret_env=PANGEA_CLI_TEST_UNSET
expect "an absent coordinator is given up on after coordinator_wait_ms" 1 \
    "the coordinator at 127.0.0.1:1 has not answered for 1000 ms" -- \
    timeout 60 "${node[@]}" --set mesh.coordinator=127.0.0.1:1 --set mesh.coordinator_wait_ms=1000
expect "an unreachable etcd is named" 1 "etcd at http://127.0.0.1:1: /v3/lease/grant" -- \
    timeout 60 "${node[@]}" --set mesh.backend=etcd --set mesh.etcd=http://127.0.0.1:1
expect "an unknown command is a usage error" 106 "A subcommand is required" -- "$pangea" frobnicate

expect_summary
