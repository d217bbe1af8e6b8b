#!/usr/bin/env bash
# The Python package installs from the checkout with pip and no network, into a virtual
# environment that sees Debian's python3-torch, and works from there alone: its extension and
# the built-in plugins it loads come from the installed package.
#   pip_install_test.sh PYTHON SOURCE_DIR
set -uo pipefail
python=$1 source=$2
source "$source/tests/lib/expect.sh"
work=$(mktemp -d /tmp/pangea-pip.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A copy of the checkout's tracked files: pip builds in the source tree (python/build).
git -C "$source" ls-files -z | (cd "$source" && xargs -0 cp --parents -t "$work" 2>/dev/null) || cp -r "$source" "$work/src"
[[ -d $work/python ]] || { echo "FAIL: could not copy the checkout"; exit 1; }
"$python" -m venv --system-site-packages "$work/venv"
expect "pip installs the package from the checkout without the network" 0 "Successfully installed pangea" -- \
    "$work/venv/bin/python" -m pip install --no-build-isolation --no-index "$work/python"
rm -rf "$work/python/build" "$work/build"  # nothing left to fall back on

cat >"$work/run.toml" <<TOML
[run]
name = "pip"
dir = "$work/run"
[diloco]
inner_steps = 2
outer_steps = 2
[mesh]
nodes = 1
[compress]
plugin = "int8"
TOML
cat >"$work/smoke.py" <<'PY'
import sys, torch, pangea
node = pangea.Node(sys.argv[1], 0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
diloco = pangea.DiLoCo(node, model, optimizer)
for _ in range(4):
    model(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step(); optimizer.zero_grad(); diloco.step()
print("package", pangea.__file__)
print("parameters", diloco.finish())
PY
cd "$work"
expect "the installed package trains from outside the checkout" 0 "package $work/venv/lib/" -- \
    env -u PYTHONPATH -u PANGEA_PLUGIN_PATH "$work/venv/bin/python" "$work/smoke.py" "$work/run.toml"
expect "with the plugins installed beside it" 0 "plugins transport/tcp, compress/int8, optim/nesterov" -- \
    env -u PYTHONPATH -u PANGEA_PLUGIN_PATH "$work/venv/bin/python" "$work/smoke.py" "$work/run.toml"
expect_summary
