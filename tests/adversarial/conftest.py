"""Fixtures of the adversarial tests: harnessed nodes (tests/adversarial/harness.py)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.adversarial.harness import ADV_CONFIG, Harness, register_domains
from tests.conftest import NodeProcess, start_node


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "adversarial: hostile-input tests against a real node (ISSUE-8); run in the default suite"
    )


HarnessFactory = Callable[..., Harness]
NodeFactory = Callable[..., NodeProcess]


@pytest.fixture
def harness_factory(tmp_path: Path, ffmpeg: str, sample_flv: Path) -> Iterator[HarnessFactory]:
    """`make(name, config=, env=, before_start=)` -> a started Harness; all stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def make(name: str = "node", **kwargs: Any) -> Harness:
            return Harness.start(stack, tmp_path / name, ffmpeg, sample_flv, **kwargs)

        yield make


@pytest.fixture
def harness(harness_factory: HarnessFactory) -> Harness:
    return harness_factory()


@pytest.fixture
def node_factory_adv(tmp_path: Path) -> Iterator[NodeFactory]:
    """Extra nodes without a publisher or monitor (the far end of a relay loop), with the
    harness's domains registered; stopped at teardown."""
    started: list[NodeProcess] = []

    def make(name: str, *, config: str = ADV_CONFIG, env: dict[str, str] | None = None) -> NodeProcess:
        node = start_node(tmp_path / name, config=config, extra_env=env)
        started.append(node)
        register_domains(node)
        return node

    yield make
    for node in started:
        node.kill(signal.SIGTERM)
