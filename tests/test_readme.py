"""The README's quickstart is what CI runs: keep them from drifting apart."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def _quickstart_commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quickstart)


def test_quickstart_has_exactly_two_one_line_commands() -> None:
    commands = _quickstart_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    demo, tests = commands
    assert "lawscreen demo" in demo
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert _quickstart_commands()[1] in ci_lines
