"""The core works without a screen: no sollol_core module pulls in textual or sollol_tui."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import sollol_core

MODULES = sorted(m.name for m in pkgutil.walk_packages(sollol_core.__path__, prefix="sollol_core."))

# A fresh interpreter imports the modules one by one and says, for each, what UI modules were loaded
# once it was imported (the first module with a non-empty list is the one that brought them in).
CHECK = """
import importlib, json, sys
report = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    report[name] = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "sollol_tui"))
print(json.dumps(report))
"""


def test_the_list_of_modules_is_complete():
    assert {"sollol_core.service", "sollol_core.http.app", "sollol_core.request.path", "sollol_core.sim",
            "sollol_core.config", "sollol_core.cluster.hosts", "sollol_core.cluster.routing"} <= set(MODULES)


@pytest.mark.timeout(90)
def test_no_core_module_imports_textual():
    r = subprocess.run([sys.executable, "-c", CHECK, "sollol_core", *MODULES], capture_output=True, text=True,
                       timeout=80, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report) == {"sollol_core", *MODULES}
    assert {name: leaked for name, leaked in report.items() if leaked} == {}
