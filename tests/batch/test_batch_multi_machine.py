"""examples/multi_machine_setup.py --demo: an external Dask scheduler and worker (`dask scheduler`,
`dask worker`), two gateways on it (`sollol --no-ui --dask-scheduler tcp://...`), all on 127.0.0.1."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from helpers import REPO

ROOT = REPO
pytestmark = pytest.mark.timeout(150)


@pytest.mark.skipif(shutil.which("dask") is None, reason="the dask command is not on PATH")
def test_two_gateways_share_an_external_scheduler(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "multi_machine_setup.py"), "--demo"],
                          capture_output=True, text=True, timeout=140, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scheduler = re.search(r"scheduler (tcp://127\.0\.0\.1:\d+), one worker", proc.stdout).group(1)
    jobs = re.findall(r"(http://127\.0\.0\.1:\d+): job \w+ done, 500/500 embedded.*dask ready \((tcp://\S+), "
                      r".*chunks by host (\{.*\})", proc.stdout)
    assert len(jobs) == 2 and len({url for url, _, _ in jobs}) == 2, proc.stdout
    for _, used, chunks in jobs:
        assert used == scheduler  # the external scheduler, not a local cluster
        assert len(re.findall(r"'127\.0\.0\.1:\d+': [1-9]", chunks)) == 2  # both hosts took chunks
    assert list(tmp_path.iterdir()) == []  # each gateway's queue lived in the example's temporary folder
