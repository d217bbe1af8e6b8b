"""A run of Python nodes for the tests in this folder: a manifest, a real `pangea coordinator`,
and worker.py processes, each node in its own process with its own log."""
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent

# The end of the manifests of the tests that kill nodes: a short timeout, int8, Nesterov.
ELASTIC = """
timeout_ms = 3000
heartbeat_ms = 300

[compress]
plugin = "int8"

[optim]
plugin = "nesterov"
"""

# The end of the manifests whose run worker.averaged_without_network() computes: no compression,
# and the outer step sets the parameters to the (weighted) average.
EXACT_AVERAGING = """
[transport]
plugin = "tcp"

[compress]
plugin = "none"

[optim]
plugin = "nesterov"
lr = 1.0
momentum = 0.0
"""


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


class Run:
    def __init__(self, pangea, work, manifest_text):
        self.work = pathlib.Path(work)
        self.manifest = self.work / "run.toml"
        self.manifest.write_text(manifest_text)
        self.logs = []
        self.nodes = {}
        address_file = self.work / "coordinator.address"
        address_file.unlink(missing_ok=True)  # a run before this one in the same directory
        self.coordinator = subprocess.Popen(
            [pangea, "coordinator", str(self.manifest), "--listen", "127.0.0.1:0", "--address-file", str(address_file)],
            stdout=self._log("coordinator"), stderr=subprocess.STDOUT)
        self.address = self._wait_for_text(address_file, 30)

    def _log(self, name):
        log = open(self.work / f"{name}.log", "a")
        self.logs.append(log)
        return log

    def _wait_for_text(self, path, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().strip():
                return path.read_text().strip()
            if self.coordinator.poll() is not None:
                fail(f"the coordinator exited with {self.coordinator.returncode} before writing {path}")
            time.sleep(0.05)
        fail(f"no {path} after {seconds} s")

    def out(self, k):
        return self.work / f"node-{k}"

    def log_text(self, k):
        return (self.work / f"node-{k}.log").read_text()

    def start(self, k, *extra):
        self.nodes[k] = subprocess.Popen(
            [sys.executable, str(HERE / "worker.py"), str(self.manifest), str(k), str(self.out(k)),
             "--set", f"mesh.coordinator={self.address}", *extra],
            stdout=self._log(f"node-{k}"), stderr=subprocess.STDOUT)

    def wait_until(self, what, condition, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        self.stop()
        fail(f"{what}: not within {seconds} s")

    def wait_all(self, seconds):
        deadline = time.monotonic() + seconds
        for k, node in self.nodes.items():
            try:
                code = node.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stop()
                fail(f"node {k} did not finish in {seconds} s; its log:\n" + self.log_text(k))
            if code != 0:
                self.stop()
                fail(f"node {k} exited with {code}; its log:\n" + self.log_text(k))

    def stop(self):
        for node in self.nodes.values():
            if node.poll() is None:
                node.kill()
                node.wait()
        if self.coordinator.poll() is None:
            self.coordinator.terminate()
            self.coordinator.wait(timeout=30)
        for log in self.logs:
            log.close()
        self.logs = []
