#!/usr/bin/env bash
# Nodes started by torchrun (PyTorch's launcher, `python3 -m torch.distributed.run`, real, with
# --no_python so that it starts `pangea run` itself): without --node-id, each node takes RANK as
# its id and WORLD_SIZE as [mesh] nodes, and rank 0 serves the coordinator at MASTER_ADDR:
# MASTER_PORT + 1 unless one is named; the run ends bit-identical to `pangea launch` of the same
# manifest. A node without --node-id or RANK, and a RANK out of range, are clear errors.
#   torchrun_test.sh <pangea binary>
set -uo pipefail
pangea=$(realpath "$1")
source "$(dirname "${BASH_SOURCE[0]}")/../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lib/tiny_run.sh"
python=
for candidate in /usr/bin/python3 python3; do  # (Debian's own Python is the one with python3-torch)
    if "$candidate" -c 'import torch.distributed.run' 2>/dev/null; then python=$candidate; break; fi
done
[[ -n $python ]] || { echo "skipped: no Python with torch.distributed.run (apt-get install python3-torch)"; exit 77; }
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
cd "$work" || exit 1

# The manifest says 5 nodes; torchrun starts 3 (WORLD_SIZE wins).
tiny_run_manifest run.toml torchrun 17 5 4 'ring_order = "rank"'
# (torchrun sets OMP_NUM_THREADS=1, which OpenBLAS follows: its sums, and so the parameters,
# depend on its thread count. The reference runs with the same.)
expect "the reference: pangea launch of three nodes" 0 "all nodes hold bit-identical parameters" -- \
    env OMP_NUM_THREADS=1 "$pangea" launch run.toml -n 3 --set mesh.nodes=3 --set run.dir="$work/reference"
want=$(json_field reference/summary/node-0.json params_hash)

printf 'run secret\n' >run.secret && chmod 600 run.secret
# (Debian's torch 1.13 under Python 3.11 cannot parse its own default "0" for --redirects and
# --tee: given explicitly, stderr goes to files under --log_dir and stdout to the console.)
log_options=(--log_dir "$work/torchrun-logs" --redirects 2 --tee 1)
torchrun() { timeout 300 "$python" -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 3 "${log_options[@]}" "$@"; }

# 1. No coordinator named: rank 0 serves it at MASTER_ADDR:MASTER_PORT + 1.
expect_rc "torchrun starts three nodes, rank 0 serving the coordinator; they finish" 0 -- \
    torchrun --no_python "$pangea" run run.toml --set run.dir="$work/hosted" --set mesh.secret_file="$work/run.secret"
for i in 0 1 2; do
    expect_equal "node $i (RANK $i) ends bit-identical to pangea launch" "$want" \
        "$(json_field hosted/summary/node-$i.json params_hash 2>/dev/null)"
done
expect_equal "no node beyond WORLD_SIZE" "node-0.json node-1.json node-2.json" "$(ls hosted/summary | xargs)"
expect "node 0 served the coordinator" 0 "serving the coordinator from this node on 0.0.0.0:" -- \
    bash -c "cat '$work'/torchrun-logs/*/attempt_0/0/stderr.log"

# 2. A coordinator of its own, named with --set.
"$pangea" coordinator run.toml --listen 127.0.0.1:0 --address-file coordinator.addr \
    --set mesh.secret_file="$work/run.secret" >coordinator.log 2>&1 &
wait_for 30 test -s coordinator.addr || { cat coordinator.log; exit 1; }
expect_rc "torchrun starts three nodes, which finish" 0 -- \
    torchrun --no_python "$pangea" run run.toml --set run.dir="$work/torchrun" --set mesh.coordinator="$(<coordinator.addr)" \
    --set mesh.secret_file="$work/run.secret"
for i in 0 1 2; do
    expect_equal "node $i (RANK $i) ends bit-identical to pangea launch" "$want" \
        "$(json_field torchrun/summary/node-$i.json params_hash 2>/dev/null)"
done

expect "no --node-id and no RANK" 1 "no --node-id: give one (0 .. [mesh] nodes - 1), or start the node under torchrun" -- \
    env -u RANK -u WORLD_SIZE "$pangea" run run.toml
expect "RANK at or past WORLD_SIZE" 1 "environment RANK=3 is not below [mesh] nodes = 3 (from environment WORLD_SIZE)" -- \
    env RANK=3 WORLD_SIZE=3 "$pangea" run run.toml
expect "a RANK that is no number" 1 "environment RANK=first: expected a whole number from 0 to 4095" -- \
    env RANK=first "$pangea" run run.toml
expect "WORLD_SIZE gives way to --set mesh.nodes" 1 "environment RANK=3 is not below [mesh] nodes = 2 (from --set mesh.nodes=2)" -- \
    env RANK=3 WORLD_SIZE=8 "$pangea" run run.toml --set mesh.nodes=2
expect_summary
