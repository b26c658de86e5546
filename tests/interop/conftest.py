"""Fixtures of the interop tests: our API served in the background for the official SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import TEST_AK, TEST_SK

from liverelay.api.testing import BackgroundApi, api_settings


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BackgroundApi]:
    """Our API on a loopback port with the test key pair and a generous rate limit."""
    # Environment credentials and ~/.volc would override the ones we pass (spec A.3).
    monkeypatch.delenv("VOLC_ACCESSKEY", raising=False)
    monkeypatch.delenv("VOLC_SECRETKEY", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    settings = api_settings(tmp_path / "data", rate_limit_per_s=1000, rate_burst=1000)
    with BackgroundApi(settings, keys=[(TEST_AK, TEST_SK)]) as s:
        yield s
