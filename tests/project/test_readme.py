"""The README opens with the two set-up commands, and CI runs exactly those."""

import re

from helpers import REPO

ROOT = REPO


def test_readme_opens_with_the_two_commands_and_ci_runs_them():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    assert blocks[:2] == ['pip install -e . && sollol', 'pip install -e ".[dev]" && python -m pytest']
    assert readme.index("```bash") < readme.index("\n## ")  # before any section
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in ci and "\npython -m pytest\n" in ci
    assert "SOLLOL_REQUIRE_REAL_OLLAMA=1" in ci  # the integration tests may not skip there
    assert not re.search(r"\b[A-Z]+_(SECTION|FIGURES|ROWS)\b", readme)  # no placeholder left
