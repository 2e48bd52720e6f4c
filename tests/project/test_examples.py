"""The examples run as a user runs them, against simulated nodes on 127.0.0.1."""

import re
import subprocess
import sys

from helpers import REPO

ROOT = REPO


def run_example(name: str, hosts: list[str]) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--hosts", ",".join(hosts), "--port", "0"],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_basic_usage(sim_cluster):
    sim = sim_cluster(n=2)
    out = run_example("basic_usage.py", sim.addresses)
    assert re.search(r"running: True at http://127\.0\.0\.1:\d+ with 2 hosts", out)
    assert re.search(r"chat answer: \[(a|b)\] tok0", out)
    assert re.search(r"streamed answer: \[(a|b)\] tok0 tok1", out)
    assert "health: ok (2/2 hosts available)" in out
    assert out.rstrip().endswith("stopped")


def test_application_integration(sim_cluster):
    sim = sim_cluster(n=3)
    out = run_example("application_integration.py", sim.addresses)
    assert "embedded 3 texts, 16 dimensions each" in out
    assert "'applied': ['routing_weights']" in out
    drained = sim.addresses[0]
    served = re.search(r"while (\S+) drains, requests went to: (.+)", out)
    assert served and served.group(1) == drained and drained not in served.group(2)
