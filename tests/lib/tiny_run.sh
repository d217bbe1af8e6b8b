# The small run most shell tests train: the tiny model with one layer, 32-token sequences, 3
# inner steps per outer step, one thread per node. Source it, then
#   tiny_run_manifest FILE NAME SEED NODES OUTER_STEPS [MORE]
# writes FILE; MORE (TOML lines) follows `nodes = NODES` in [mesh], so it may add mesh keys
# (ring_order = "rank") before its own sections.
tiny_run_manifest() {
    local file=$1 name=$2 seed=$3 nodes=$4 outer_steps=$5 more=${6:-}
    cat >"$file" <<TOML
[run]
name = "$name"
seed = $seed
[model]
preset = "tiny"
layers = 1
[data]
seq_len = 32
eval_sequences = 8
[train]
lr = 0.003
micro_batch = 4
warmup_steps = 4
threads = 1
[diloco]
inner_steps = 3
outer_steps = $outer_steps
[mesh]
nodes = $nodes
$more
TOML
}
