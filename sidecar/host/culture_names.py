"""Culture ship names for agents that were not given one: ``gcu-sleeper-service``, ``gcu-mistake-not``...

``agentcom onboard`` calls :func:`pick_name` with every id the hub already knows (agents and tokens), so two agents
never share a name.
"""

from __future__ import annotations

import random
import re

PREFIX = "gcu-"
SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
"""Lower-case words joined by single hyphens."""

CULTURE_NAMES: tuple[str, ...] = (
    "sleeper-service",
    "so-much-for-subtlety",
    "of-course-i-still-love-you",
    "just-read-the-instructions",
    "mistake-not",
    "zero-gravitas",
    "limiting-factor",
    "little-rascal",
    "lasting-damage",
    "killing-time",
    "frank-exchange-of-views",
    "attitude-adjuster",
    "arbitrary",
    "grey-area",
    "fate-amenable-to-change",
    "quietly-confident",
    "profit-margin",
    "ethics-gradient",
    "unfortunate-conflict-of-evidence",
    "use-psychology",
    "very-little-gravitas-indeed",
    "nervous-energy",
    "serious-callers-only",
    "shoot-them-later",
    "problem-child",
    "prosthetic-conscience",
    "irregular-apocalypse",
    "no-more-mr-nice-guy",
    "flexible-demeanour",
    "trade-surplus",
    "its-character-forming",
    "jaundiced-outlook",
    "funny-it-worked-last-time",
    "someone-elses-problem",
    "what-are-the-civilian-applications",
    "youthful-indiscretion",
    "well-i-was-in-the-neighbourhood",
    "pure-big-mad-boat-man",
    "lapsed-pacifist",
    "xenophobe",
    "the-ends-of-invention",
    "a-series-of-unlikely-explanations",
    "steely-glint",
    "total-internal-reflection",
    "zealot",
    "kiss-this-then",
    "sweet-and-full-of-grace",
    "eschatologist",
    "displacement-activity",
    "heavy-messing",
    "conventional-wisdom",
    "different-tan",
    "death-and-gravity",
    "appeal-to-reason",
    "reasonable-excuse",
    "screw-loose",
    "warm-considering",
    "honest-mistake",
    "congenital-optimist",
    "charitable-view",
    "poke-it-with-a-stick",
    "you-call-this-clean",
    "just-testing",
    "size-isnt-everything",
    "learned-response",
    "nuisance-value",
    "never-talk-to-strangers",
)


class NamesExhausted(LookupError):
    """Every Culture name is taken; the caller must choose a name itself."""


def pick_name(taken: set[str], rng: random.Random | None = None) -> str:
    """A random ``gcu-<slug>`` not in ``taken`` (ids compared as given, with the prefix).

    Raises:
        NamesExhausted: all names are taken.
    """
    free = [PREFIX + slug for slug in CULTURE_NAMES if PREFIX + slug not in taken]
    if not free:
        raise NamesExhausted(f"all {len(CULTURE_NAMES)} Culture ship names are taken; pass --name")
    return (rng or random.SystemRandom()).choice(free)
