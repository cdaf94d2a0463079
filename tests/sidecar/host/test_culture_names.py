"""Culture ship names for onboarded agents: a clean list, and a picker that never hands out a taken name."""

from __future__ import annotations

import random

import pytest

from sidecar.host.culture_names import CULTURE_NAMES, PREFIX, SLUG, NamesExhausted, pick_name

ALL = {PREFIX + slug for slug in CULTURE_NAMES}


def test_names_are_unique_and_plenty():
    """No slug appears twice, and there are enough for a fleet (about 60)."""
    assert len(set(CULTURE_NAMES)) == len(CULTURE_NAMES)
    assert len(CULTURE_NAMES) >= 60


@pytest.mark.parametrize("slug", CULTURE_NAMES)
def test_slug_format(slug):
    """Each slug is lower-case words joined by single hyphens, short enough for an agent id and a pm2 name."""
    assert SLUG.fullmatch(slug), slug
    assert len(PREFIX + slug) <= 64


def test_the_classics_are_there():
    """The names the original shipped with are kept."""
    for slug in (
        "sleeper-service",
        "so-much-for-subtlety",
        "of-course-i-still-love-you",
        "just-read-the-instructions",
        "mistake-not",
        "zero-gravitas",
    ):
        assert slug in CULTURE_NAMES


def test_pick_name_has_the_gcu_prefix():
    """A picked name is ``gcu-`` plus a slug from the list."""
    name = pick_name(set())
    assert name.startswith("gcu-") and name.removeprefix("gcu-") in CULTURE_NAMES


def test_pick_name_avoids_taken_names():
    """With all but one name taken, every pick is the free one."""
    free = "gcu-mistake-not"
    taken = ALL - {free}
    assert {pick_name(taken, random.Random(seed)) for seed in range(20)} == {free}


def test_pick_name_ignores_unrelated_taken_ids():
    """Ids that are not Culture names (or lack the prefix) do not shrink the choice."""
    picks = {pick_name({"sleeper-service", "worker-1"}, random.Random(seed)) for seed in range(200)}
    assert "gcu-sleeper-service" in picks


def test_pick_name_spreads_over_the_list():
    """Picks are random, not always the first free name."""
    assert len({pick_name(set(), random.Random(seed)) for seed in range(50)}) > 10


def test_pick_name_raises_when_all_are_taken():
    """With every name taken it raises, telling the caller to pass a name."""
    with pytest.raises(NamesExhausted, match="--name"):
        pick_name(set(ALL))
