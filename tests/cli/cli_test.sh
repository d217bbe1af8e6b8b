#!/usr/bin/env bash
# The pangea command line, as a user runs it.
#   cli_test.sh <pangea binary> <source dir> <fixtures dir>
set -uo pipefail
pangea=$1 source=$2 fixtures=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/../lib/expect.sh"

expect "version names the plugin ABI" 0 "(plugin ABI 1.0)" -- "$pangea" version
expect "plugins list shows the built-ins" 0 "compress  none            1.0.0     1.0" -- "$pangea" plugins list
expect "plugins list shows the optimizer" 0 "optim     nesterov" -- "$pangea" plugins list
expect "plugins show prints settings with defaults and ranges" 0 "momentum          float    default 0.9  [0, 0.999999]" -- \
    "$pangea" plugins show optim nesterov
expect "plugins show of an unknown plugin lists what exists" 1 "no optim plugin named 'adamw'. Available: nesterov." -- \
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
expect "run says training is not available yet" 2 "\`pangea run\` is not available yet" -- "$pangea" run "$source/examples/local.toml"
expect "an unknown command is a usage error" 106 "A subcommand is required" -- "$pangea" frobnicate

expect_summary
