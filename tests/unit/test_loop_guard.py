"""The relay-loop guard's pure decisions (relay/loops.py) and the pullers' marker."""

from __future__ import annotations

import asyncio

import pytest

from liverelay.relay.loops import LoopGuard, parse_via, strip_mark, valid_node_id
from liverelay.sources.base import current_relay_via, relay_chain
from liverelay.sources.rtmp import marked_play_name


def test_parse_via() -> None:
    assert parse_via("") is None
    assert parse_via("tok=1") is None
    assert parse_via("lr_via=") == []
    assert parse_via("tok=1&lr_via=ab.cd") == ["ab", "cd"]
    assert parse_via("lr_via=ab&lr_via=cd") == ["ab", "cd"]  # repeated: all count
    assert len(parse_via("lr_via=" + "x" * 5000) or []) >= 4  # overlong: counts as a long chain


def test_refusal_rules() -> None:
    guard = LoopGuard("me", max_hops=3)
    assert guard.refusal("tok=1", starting=True) is None  # a viewer, not a relay
    assert guard.refusal("lr_via=a.b", starting=True) is None  # a chain of 2, we would be 3rd
    assert "already in the relay chain" in (guard.refusal("lr_via=a.me", starting=False) or "")
    assert "already in the relay chain" in (guard.refusal("lr_via=me", starting=True) or "")
    assert "max_hops=3" in (guard.refusal("lr_via=a.b.c", starting=True) or "")
    # Joining a pull that is already running adds no hop.
    assert guard.refusal("lr_via=a.b.c", starting=False) is None


def test_chain_and_strip() -> None:
    guard = LoopGuard("me", max_hops=4)
    assert guard.chain("tok=1") == ("me",)
    assert guard.chain("lr_via=a.b&tok=1") == ("a", "b", "me")
    assert strip_mark("tok=a%2Bb&x=1") == "tok=a%2Bb&x=1"  # untouched, byte for byte
    assert strip_mark("tok=a%2Bb&lr_via=a.b") == "tok=a%2Bb"


def test_node_ids() -> None:
    assert valid_node_id("3f9a1c02") and valid_node_id("edge-1_a")
    assert not valid_node_id("") and not valid_node_id("a.b") and not valid_node_id("x" * 33)
    with pytest.raises(ValueError):
        LoopGuard("a.b", max_hops=4)


async def test_marker_reaches_tasks_started_inside_relay_chain() -> None:
    seen: list[str] = []

    async def puller() -> None:
        seen.append(current_relay_via())
        seen.append(marked_play_name("s?tok=1"))
        seen.append(marked_play_name("s"))

    with relay_chain(("a", "me")):
        task = asyncio.get_running_loop().create_task(puller())
    assert current_relay_via() == ""  # reset outside the block
    await task
    assert seen == ["a.me", "s?tok=1&lr_via=a.me", "s?lr_via=a.me"]
    assert marked_play_name("s") == "s"  # no chain: no marker
