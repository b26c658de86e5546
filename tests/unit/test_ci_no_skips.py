"""Under CI=true a test cannot pass by skipping: a missing tool fails (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import REPO

SAMPLE = """
import pytest
from tests.conftest import require_tool


def test_needs_a_missing_tool() -> None:
    require_tool("liverelay-no-such-tool", install="nothing installs it")


def test_skips_by_itself() -> None:
    pytest.skip("some reason")


@pytest.mark.xfail(strict=True, reason="an expected failure stays one")
def test_expected_failure() -> None:
    raise AssertionError


def test_passes() -> None:
    assert True
"""


def run_sample(tmp_path: Path, ci: str | None) -> str:
    test_file = tmp_path / "test_sample.py"
    test_file.write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    # -p tests.conftest: the project's conftest as a plugin, for a file outside tests/.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), str(test_file)],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip
    return result.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_a_missing_tool_skips(tmp_path: Path, ci: str | None) -> None:
    out = run_sample(tmp_path, ci)
    assert "2 skipped" in out and "1 passed" in out and "1 xfailed" in out, out
    assert "liverelay-no-such-tool is not installed" in out


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_every_skip_fails(tmp_path: Path, ci: str) -> None:
    out = run_sample(tmp_path, ci)
    assert "2 failed" in out and "1 passed" in out and "1 xfailed" in out, out
    assert "skipped" not in out.splitlines()[-1]
