"""Telling a placeholder from a secret, for :mod:`shared.secret_scan`.

A value is a placeholder only when it is one AS A WHOLE; a stand-in word somewhere inside a random value never
clears it (``ghp_`` and 36 random characters holding ``fake`` is a token, ``s3cr3t-Prod-Key-9f8e7d...token`` a
secret).

- Structured tokens (:func:`token_is_placeholder`: ``aws_key``, ``aws_secret``, ``github_token``, ``slack_token``):
  a body that is obviously not random: one or two characters (``xxxx``), a unit of up to four characters repeated
  (``abab``, ``abc1abc1``), a run counting up (``0123456789abcdef``), almost nothing left once mask runs
  (``xxxx``, ``****``, ``...``) and counting runs (``012345``) are taken out, AWS's documented ``...EXAMPLE`` or
  ``...EXAMPLEKEY``, a template marker around the whole token (``<ghp_...>``, ``{{...}}``, ``${...}``), or a
  known stand-in as a whole (``xoxb-your-slack-token-here``).
- Literals assigned to a secret's name (:func:`literal_part`, :func:`is_reference`, :func:`is_stand_in`): a
  template or reference as a whole (``${VAR}``, ``${{ secrets.X }}``, ``{{ var }}``, ``<your-key>``,
  ``%(name)s``, ``$(cmd)``, ``$VAR``, ``os.environ[...]``); template spans, mask runs and counting runs inside a
  value are taken out and what is left is judged (``Bearer ${TOKEN}`` leaves ``Bearer``, ``sk-live-0123456789``
  leaves ``sk-live``); a sentence or statement (:func:`is_prose`); a known stand-in: every word of it a
  stand-in word (``your``, ``here``, ``example``, ``dummy``, ``changeme``, ``redacted``...) or a word naming a
  secret (``api``, ``key``, ``token``...), at least one of them a stand-in word, with a few digits or separators
  at most (``your-token-here``, ``example123``, ``ChangeMe123!``, ``yourtokenhere``); or plain words between
  separators, one of them naming a secret (``bench-forge-token``: a label, not a passphrase).
"""

from __future__ import annotations

import re
from functools import lru_cache

STAND_IN_WORDS = frozenset({
    "example", "examples", "sample", "samples", "dummy", "placeholder", "changeme", "change", "redacted", "fake",
    "test", "testing", "your", "yours", "my", "here", "insert", "replace", "todo", "fixme", "tbd", "foo", "bar",
    "baz", "demo", "mock", "stub", "none", "null", "nil", "empty", "default", "notasecret", "xxx",
})  # fmt: skip
"""Words that say a value stands in for a secret."""
NAMING_WORDS = frozenset({
    "api", "key", "keys", "token", "tokens", "secret", "secrets", "password", "passwords", "passwd", "pass", "pwd",
    "passphrase", "credential", "credentials", "access", "auth", "client", "private", "app", "value", "goes", "put",
    "enter", "set", "to", "me", "is", "this", "the", "an", "id", "string", "for", "of", "with", "from", "bot",
    "ghp", "gho", "ghs", "ghu", "ghr", "pat", "sk", "pk", "rk", "live", "xoxb", "xoxp", "akia", "bearer",
    "user", "db", "database", "webhook", "slack", "github", "aws", "service", "account", "prod", "dev", "local",
    "not", "real",
})  # fmt: skip
"""Words that name what a value is (``api``, ``key``, ``token``...): a value of these alone may still be real."""
SECRET_NAMES = frozenset({
    "key", "keys", "token", "tokens", "secret", "secrets", "password", "passwords", "passwd", "passphrase",
    "credential", "credentials", "apikey",
})  # fmt: skip
DOCUMENTED_EXAMPLES = ("EXAMPLE", "EXAMPLEKEY")
"""How AWS ends its documented keys (``AKIAIOSFODNN7EXAMPLE``, ``wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY``)."""
MIN_LEFT_CHARS = 8
"""A token body with fewer characters than this left once its mask runs are out is a mask, not a token."""
MIN_COUNTING_RUN = 6
"""A run of this many characters counting up (``012345``, ``abcdef``) is filler, not randomness."""
MAX_STAND_IN_EXTRA = 8
"""A stand-in carries at most this many characters beside its words and separators (``example123``)."""

_TEMPLATE = re.compile(
    r"\$\{\{[^{}\n]{0,200}\}\}|\$\{[^{}\n]{0,200}\}|\{\{[^{}\n]{0,200}\}\}|\{[A-Za-z_][\w.]{0,100}\}"
    r"|<[^<>\n]{1,200}>|%\([^()\n]{0,100}\)[a-z]|\$\([^()\n]{0,200}\)|\[[A-Z_ -]{1,40}\]"
)
"""A template or masked span: ``${{ x }}``, ``${X}``, ``{{ x }}``, ``{name}``, ``<x>``, ``%(x)s``, ``$(x)``,
``[REDACTED]``."""
_REFERENCE = re.compile(
    r"\$[A-Za-z_]\w{0,100}|\$env:\w{1,100}|%[A-Za-z_]\w{0,100}%"
    r"|(?:os\.environ(?:\.get)?|os\.getenv|getenv|process\.env|ENV|System\.getenv|Deno\.env\.get)[\[.(][^\n]{0,200}"
)
"""A reference as a whole value: ``$VAR``, ``$env:VAR``, ``%VAR%``, ``os.environ[...]``, ``process.env.X``..."""
_MASK = re.compile(r"[xX]{4,}|\*{3,}|\.{3,}|…+|#{4,}|•{3,}")
_LETTERS = re.compile(r"[A-Za-z]+")
_SEPARATORS = frozenset(" _-.:/")
_LABEL = re.compile(r"[A-Za-z][a-z]*(?:[ _.-]+[A-Za-z][a-z]*)+\Z")
"""Two or more plain words between separators (``bench-forge-token``, ``Deploy token``): no digit, no capital
inside a word."""


def is_reference(value: str) -> bool:
    """Whether ``value`` as a whole is a template or a reference to a secret kept elsewhere."""
    value = value.strip()
    return _TEMPLATE.fullmatch(value) is not None or _REFERENCE.fullmatch(value) is not None


def literal_part(value: str) -> str:
    """``value`` without its template spans, mask runs and counting runs (``0123456789``): what of it could be a
    secret."""
    return _without_counting_runs(_MASK.sub("", _TEMPLATE.sub("", value))).strip(" _-.:/")


def _without_counting_runs(text: str) -> str:
    """``text`` without its runs of :data:`MIN_COUNTING_RUN` or more characters counting up (``abcdef``)."""
    out, start = [], 0
    for end in range(1, len(text) + 1):
        if end == len(text) or ord(text[end]) - ord(text[end - 1]) != 1:
            if end - start < MIN_COUNTING_RUN:
                out.append(text[start:end])
            start = end
    return "".join(out)


def is_prose(value: str) -> bool:
    """Whether ``value`` is a sentence or a statement (``INSERT INTO tokens (...) VALUES (?, ?)``), not a secret:
    four or more pieces between spaces, not all of them plain words (``correct horse battery staple`` is a
    passphrase)."""
    pieces = value.split()
    return len(pieces) >= 4 and not all(piece.isalpha() for piece in pieces)


@lru_cache(maxsize=1024)
def _reading(run: str) -> int:
    """How the lower-case letter run reads as stand-in and naming words (``yourtokenhere``): 0 not at all, 1 as
    naming words only, 2 with a stand-in word among them."""
    if len(run) > 64:
        return 0
    best = [1] + [0] * len(run)  # per prefix: 0 unreadable, 1 naming words only, 2 a stand-in word among them
    for end in range(1, len(run) + 1):
        for start in range(max(0, end - 14), end):
            word = run[start:end]
            if best[start] and (word in NAMING_WORDS or _is_stand_in_word(word)):
                best[end] = max(best[end], 2 if _is_stand_in_word(word) else best[start])
    return best[-1]


def _is_stand_in_word(word: str) -> bool:
    return word in STAND_IN_WORDS or (len(word) >= 3 and set(word) == {"x"})


def is_stand_in(value: str) -> bool:
    """Whether ``value`` is a known stand-in as a whole: stand-in and naming words with a few digits or separators
    (``your_api_key_here``, ``example123``, ``ChangeMe123!``), or plain words between separators, one of them naming
    a secret (``bench-forge-token``)."""
    runs = [run.lower() for run in _LETTERS.findall(value)]
    if not runs:
        return False
    extra = sum(1 for ch in _LETTERS.sub("", value) if ch not in _SEPARATORS)
    readings = [_reading(run) for run in runs]
    if extra <= min(MAX_STAND_IN_EXTRA, sum(map(len, runs))) and all(readings) and 2 in readings:
        return True
    if _LABEL.match(value):
        return any(word.lower() in SECRET_NAMES for word in re.split(r"[ _.-]+", value))
    return False


def _patterned(body: str) -> bool:
    """A body obviously not random: one or two characters, a short unit repeated, or a run counting up."""
    if len(set(body)) <= 2:
        return True
    if any(body == (body[:unit] * (len(body) // unit + 1))[: len(body)] for unit in range(1, 5)):
        return True
    steps = sum(1 for a, b in zip(body, body[1:], strict=False) if ord(b) - ord(a) == 1)
    return len(body) >= 8 and steps >= 0.75 * (len(body) - 1)


def _framed(before: str, after: str) -> bool:
    """Whether a template marker opens right before the token and closes right after it."""
    before, after = before.rstrip(), after.lstrip()
    return (before.endswith("<") and after.startswith(">")) or (before.endswith(("{{", "${")) and after.startswith("}"))


def token_is_placeholder(kind: str, body: str, before: str = "", after: str = "") -> bool:
    """Whether the structured token of ``kind`` with ``body`` (its part after a fixed prefix such as ``ghp_``),
    found between ``before`` and ``after`` on its line, is a placeholder."""
    if kind.startswith("aws") and body.endswith(DOCUMENTED_EXAMPLES):
        return True
    return (
        _patterned(body)
        or len(_without_counting_runs(_MASK.sub("", body))) < MIN_LEFT_CHARS
        or _framed(before, after)
        or is_stand_in(body.strip("-_"))
    )
