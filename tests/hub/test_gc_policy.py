"""The hub's garbage-collector policy (hub/gc_policy.py): survivors of a full collection are frozen, new garbage is
still collected, cycles that die frozen come back at the thaw, and a running hub reports it on /health."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from hub.gc_policy import GcPolicy


class Node:
    """A reference cycle (a node pointing at itself): only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def policy() -> Iterator[GcPolicy]:
    p = GcPolicy()
    p.install()
    yield p
    while p._installs:
        p.uninstall()


def test_survivors_of_a_full_collection_are_frozen(policy: GcPolicy) -> None:
    alive = [Node() for _ in range(100)]
    before = gc.get_freeze_count()
    gc.collect()
    assert policy.n_full >= 1 and policy.full_ms_max > 0
    assert gc.get_freeze_count() >= before + len(alive)
    assert policy.stats()["frozen_objects"] == gc.get_freeze_count()


async def test_the_reported_frozen_count_follows_freezes_and_thaws(policy: GcPolicy) -> None:
    """/health's frozen-object count is kept between calls, yet is never stale after a freeze or a thaw."""
    gc.collect()
    assert policy.stats()["frozen_objects"] == gc.get_freeze_count() > 0
    alive = [Node() for _ in range(100)]
    gc.collect()
    assert policy.stats()["frozen_objects"] == gc.get_freeze_count() >= len(alive)
    thaw = asyncio.create_task(policy.run_thaw(0.01))
    try:
        async with asyncio.timeout(5):
            while policy.n_thaws == 0:
                await asyncio.sleep(0.01)
    finally:
        thaw.cancel()
    assert policy.stats()["frozen_objects"] == gc.get_freeze_count()


def test_garbage_made_after_a_freeze_is_still_collected(policy: GcPolicy) -> None:
    gc.collect()
    ref = weakref.ref(Node())  # unreachable at once, but a cycle: refcounting alone cannot free it
    assert ref() is not None
    gc.collect()
    assert ref() is None


async def test_a_cycle_that_dies_frozen_is_reclaimed_after_the_thaw(policy: GcPolicy) -> None:
    node = Node()
    ref = weakref.ref(node)
    gc.collect()  # node survives it, so it is frozen
    del node
    gc.collect()
    assert ref() is not None, "frozen objects are out of the collector's reach until the thaw"
    thaw = asyncio.create_task(policy.run_thaw(0.01))
    try:
        async with asyncio.timeout(5):
            while policy.n_thaws == 0:
                await asyncio.sleep(0.01)
    finally:
        thaw.cancel()
    gc.collect()
    assert ref() is None


def test_nested_installs_keep_the_policy_until_the_last_uninstall(policy: GcPolicy) -> None:
    policy.install()
    policy.uninstall()
    assert policy._observe in gc.callbacks
    policy.uninstall()
    assert policy._observe not in gc.callbacks
    assert gc.get_freeze_count() == 0


async def test_a_running_hub_reports_its_collector_on_health(make_hub) -> None:
    hub = await make_hub()
    gc.collect()
    body = (await hub.http.get("/health")).json()
    assert body["gc"]["frozen_objects"] > 0
    assert body["gc"]["full_collections"] >= 1


async def test_the_policy_can_be_switched_off(make_hub) -> None:
    """With gc_freeze off the hub freezes nothing (what an earlier hub in this process froze is thawed first)."""
    gc.unfreeze()
    hub = await make_hub(gc_freeze=False)
    gc.collect()
    assert gc.get_freeze_count() == 0
    assert (await hub.http.get("/health")).status_code == 200
