"""The pre-publication scan: what must never leave a host in a change, found in the lines a diff ADDS.

Kinds found: ``private_key`` (a PEM/OpenSSH/PGP private key block), ``aws_key`` (access key ids) and
``aws_secret``, ``github_token`` (``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``, ``github_pat_``), ``slack_token``
(``xox?-`` tokens and incoming webhooks), ``jwt``, ``generic_secret`` (``api_key``/``secret``/``password``/``token``
assigned a literal with enough entropy), ``personal_path`` (``/home/<user>/``, ``/Users/<user>/``,
``C:\\Users\\<user>\\``) and ``internal_address`` (RFC 1918 IPv4 addresses, ``*.internal``/``*.local``/``*.corp``
hosts). A value is let through only when it is a placeholder AS A WHOLE (``AKIAIOSFODNN7EXAMPLE``, ``ghp_xxxx...``,
``${VAR}``, ``<your-key>``, ``changeme``, ``your-token-here``; the rules are in :mod:`shared.secret_placeholder`): a
stand-in word inside a random value (a token holding ``fake``, a key ending in ``token``) never clears it.

Binary files (``Binary files ... differ``, ``GIT binary patch``) have no lines to read. :func:`binary_files` lists
those a diff adds or changes; one named like a key store (``*.jks``, ``*.p12``, ``*.keystore``, ``id_ed25519``...)
is a ``key_file`` finding at line 0 (it cannot be cleared unread, so it blocks), and the others are let through but
named: the publication adds :func:`describe_unscanned` to its tier reasons, so the report and the pull request's
body say which files no scan read.

A finding names its kind, file and line; its excerpt is the line with every secret of that line masked, so a report
never carries what it found. Pure and bounded: regexes with bounded repetitions, at most :data:`MAX_FINDINGS`.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from shared.repos import ScanFinding
from shared.secret_placeholder import (
    DOCUMENTED_EXAMPLES,
    is_prose,
    is_reference,
    is_stand_in,
    literal_part,
    token_is_placeholder,
)

MAX_FINDINGS = 200
"""As many as a :class:`~shared.repos.ChangeReport` carries."""
EXCERPT_CHARS = 160
MASK = "****"
GENERIC_MIN_CHARS = 8
GENERIC_MIN_WORDS_CHARS = 16
"""A literal of letters and separators only needs this many characters to count (a passphrase, not ``read-only``)."""
GENERIC_MIN_ENTROPY = 2.5
"""Bits per character a literal needs to count as a secret (``"aaaaaaaa"`` has 0, ``"hunter2!x"`` about 3)."""

PLACEHOLDER_VALUES = frozenset({"password", "secret", "token", "none", "null", "true", "false", "test", "testing"})
"""Literals that are no secret whatever their entropy (more stand-ins: :mod:`shared.secret_placeholder`)."""
PLACEHOLDER_USERS = frozenset({
    "user", "username", "me", "you", "runner", "example", "someone", "name", "shared", "public", "default",
    "$user", "${user}", "<user>", "%username%", "...", "all users", "administrator", "foo", "bar",
})  # fmt: skip
CODE_SUFFIXES = frozenset({
    ".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".kt", ".c", ".h", ".cc", ".cpp", ".hpp",
    ".cs", ".rb", ".php", ".swift", ".scala", ".ex", ".exs", ".erl", ".lua", ".sh",
})  # fmt: skip
"""Files where a bare ``name.local`` is more likely an attribute than a host: there a host needs a URL or quotes."""
KEY_FILE_SUFFIXES = frozenset({".p12", ".pfx", ".jks", ".keystore", ".bks", ".kdbx", ".ppk", ".key", ".pem"})
KEY_FILE_NAMES = frozenset({"id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk"})
"""A BINARY file named like these is a key store: the scan cannot read it, so it blocks (a text one is read)."""
PRIVATE_NETS = tuple(ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
PRIVATE_BLOCK_STARTS = frozenset(net.network_address for net in PRIVATE_NETS)
"""``10.0.0.0`` and the like name a whole private block (``10.0.0.0/8``), not a host."""
PLACEHOLDER_HOSTS = frozenset({"name", "host", "hostname", "myhost", "server", "foo", "bar", "your", "some"})

_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_AWS_KEY = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA)[A-Z0-9]{16}(?![A-Z0-9])")
_AWS_SECRET = re.compile(
    r"(?i)aws_?secret_?(?:access_?)?key[\"']?\s{0,10}[:=]\s{0,10}[\"']?([A-Za-z0-9/+]{40})(?![\w/+])"
)
_GITHUB = re.compile(r"(?<![\w])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![\w])")
_SLACK = re.compile(
    r"(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,250}|https://hooks\.slack\.com/services/T[A-Za-z0-9_/]{8,200}"
)
_JWT = re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,4000}\.eyJ[A-Za-z0-9_-]{8,8000}\.[A-Za-z0-9_-]{10,2000}(?![\w-])")
_GENERIC = re.compile(
    r"(?i)(?:api[_-]?key|apikey|secret(?:[_-]?key)?|passw(?:or)?d|pwd|auth[_-]?token|access[_-]?token"
    r"|access[_-]?key|client[_-]?secret|private[_-]?key|token)(?!\w)[\"']?\s{0,10}(?::=|=>|=|:)\s{0,10}"
    r"(?:(?P<q>[\"'`])(?P<quoted>[^\"'`\n]{1,500})(?P=q)|(?P<bare>[A-Za-z0-9+/=_\-.!@#$%^&*~]{1,500}))"
)
_PERSONAL = re.compile(
    r"(?<![\w.])/home/(?P<home>[A-Za-z0-9._-]{1,64})/|(?<![\w.])/Users/(?P<users>[A-Za-z0-9._-]{1,64})/"
    r"|(?i:\b[a-z]:(?:\\\\|\\|/)users(?:\\\\|\\|/))(?P<win>[A-Za-z0-9._-]{1,64})(?:\\|/)"
)
_IPV4 = re.compile(r"(?<![\w.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\w]|\.\d)")
_HOST = re.compile(
    r"(?i)(?<![\w.-])(?P<labels>(?:[a-z0-9][a-z0-9-]{0,62}\.){1,8})(?P<tld>internal|local|corp)(?![\w-]|\.\w|\()"
)
_WORDS = re.compile(r"[A-Za-z][A-Za-z _.-]*\Z")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_.]*\Z")
_BINARY_MARKS = re.compile(
    r"^(?:diff --git .{0,8200}|deleted file mode.{0,20}|Binary files .{0,8200} differ|GIT binary patch)$", re.M
)
_HUNK = re.compile(r"@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class _Hit:
    kind: str
    start: int
    end: int
    """The span to mask: the secret itself, never its harmless prefix (``ghp_``, ``AKIA``, ``/home/``)."""


def entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    if not text:
        return 0.0
    counts, n = Counter(text), len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _generic_value_is_secret(value: str, quoted: bool) -> bool:
    if is_reference(value):
        return False  # ``${VAR}``, ``{{ var }}``, ``<your-key>``, ``%(name)s``, ``$(cmd)``, ``os.environ[...]``
    literal = literal_part(value)  # ``Bearer ${TOKEN}`` is judged by ``Bearer``, ``sk_live_****`` by ``sk_live_``
    if len(literal) < GENERIC_MIN_CHARS or entropy(literal) < GENERIC_MIN_ENTROPY:
        return False
    if literal.lower() in PLACEHOLDER_VALUES or is_stand_in(literal) or literal.endswith(DOCUMENTED_EXAMPLES):
        return False
    if is_prose(literal):
        return False  # a sentence or a statement: ``INSERT_TOKEN = "INSERT INTO tokens (...) VALUES (?, ?)"``
    if _WORDS.match(literal) and len(literal) < GENERIC_MIN_WORDS_CHARS:
        return False  # ``read-only``, ``local dev``: words, not a secret (a long passphrase still counts)
    if quoted:
        return True
    # bare: skip names and references (``settings.secret_key``, ``os.environ``); a literal mixes digits or symbols
    return _IDENTIFIER.match(value) is None and value[0].isalnum()


def _token(kind: str, line: str, match: re.Match[str], body_start: int, body_end: int) -> _Hit:
    """The hit of a structured token whose body (its random part) spans ``body_start:body_end``; of kind
    ``placeholder`` when the token is one (it then clears a generic secret on its span, and is no finding)."""
    body, before, after = line[body_start:body_end], line[: match.start()], line[match.end() :]
    return _Hit("placeholder" if token_is_placeholder(kind, body, before, after) else kind, body_start, body_end)


def _hits(line: str, is_code: bool) -> Iterator[_Hit]:
    for m in _PRIVATE_KEY.finditer(line):
        yield _Hit("private_key", m.end(), max(len(line), m.end()))
    tokens = [_token("aws_key", line, m, m.start() + 4, m.end()) for m in _AWS_KEY.finditer(line)]
    tokens += [_token("aws_secret", line, m, m.start(1), m.end(1)) for m in _AWS_SECRET.finditer(line)]
    for m in _GITHUB.finditer(line):
        prefix = 11 if m.group().startswith("github_pat_") else 4
        tokens.append(_token("github_token", line, m, m.start() + prefix, m.end()))
    for m in _SLACK.finditer(line):
        prefix = 5 if m.group().startswith("xox") else 33
        tokens.append(_token("slack_token", line, m, m.start() + prefix, m.end()))
    yield from (hit for hit in tokens if hit.kind != "placeholder")
    cleared = [hit for hit in tokens if hit.kind == "placeholder"]
    for m in _JWT.finditer(line):
        yield _Hit("jwt", m.start() + 3, m.end())
    for m in _GENERIC.finditer(line):
        group = "quoted" if m.group("quoted") is not None else "bare"
        hit = _Hit("generic_secret", m.start(group), m.end(group))
        if _generic_value_is_secret(m.group(group), group == "quoted") and not any(_overlap(hit, c) for c in cleared):
            yield hit
    for m in _PERSONAL.finditer(line):
        group = next(g for g in ("home", "users", "win") if m.group(g) is not None)
        if m.group(group).lower() not in PLACEHOLDER_USERS:
            yield _Hit("personal_path", m.start(group), m.end(group))
    for m in _IPV4.finditer(line):
        if all(int(octet) < 256 for octet in m.groups()):
            address = ipaddress.ip_address(m.group())
            if any(address in net for net in PRIVATE_NETS) and address not in PRIVATE_BLOCK_STARTS:
                yield _Hit("internal_address", m.start(2), m.end())
    for m in _HOST.finditer(line):
        before = line[max(0, m.start() - 3) : m.start()]
        quoted_or_url = before.endswith(("//", "@", '"', "'", "`"))
        first = m.group("labels").split(".")[0].lower()
        if "example" not in m.group().lower() and first not in PLACEHOLDER_HOSTS and (quoted_or_url or not is_code):
            yield _Hit("internal_address", m.start("labels"), m.end("labels") - 1)


def _masked(line: str, hits: list[_Hit]) -> str:
    """``line`` with every span of ``hits`` replaced by :data:`MASK` (overlapping spans merged)."""
    spans: list[list[int]] = []
    for hit in sorted(hits, key=lambda h: h.start):
        if spans and hit.start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], hit.end)
        else:
            spans.append([hit.start, hit.end])
    out, at = [], 0
    for start, end in spans:
        out += [line[at:start], MASK]
        at = end
    out.append(line[at:])
    return "".join(out)


def _excerpt(line: str, hits: list[_Hit], hit: _Hit) -> str:
    """The masked line around ``hit``, cut to :data:`EXCERPT_CHARS`, control characters shown as ``?``."""
    # The whole line is masked before it is cut, so a window's edge never shows part of a secret.
    earlier = [_Hit(h.kind, h.start, min(h.end, hit.start)) for h in hits if h.start < hit.start]
    at = len(_masked(line[: hit.start], earlier))
    start = max(0, at - EXCERPT_CHARS // 2)
    return _CONTROL.sub("?", _masked(line, hits)[start : start + EXCERPT_CHARS]).strip()


def _deduplicated(hits: list[_Hit]) -> list[_Hit]:
    """``hits`` in line order, without a ``generic_secret`` that another kind found already (``token = "ghp_..."``)."""
    specific = [h for h in hits if h.kind != "generic_secret"]
    generic = [h for h in hits if h.kind == "generic_secret" and not any(_overlap(h, s) for s in specific)]
    return sorted(specific + generic, key=lambda h: h.start)


def _overlap(a: _Hit, b: _Hit) -> bool:
    return a.start < b.end and b.start < a.end


def _diff_path(header: str) -> str | None:
    """The new path of a ``+++ b/path`` line (None for ``/dev/null``)."""
    name = header[4:].rstrip("\t").strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    if name == "/dev/null":
        return None
    return name[2:] if name.startswith("b/") else name


def added_lines(diff: str) -> Iterator[tuple[str, int, str]]:
    """``(path, line number in the new file, text)`` of each line ``diff`` (a unified ``git diff``) adds."""
    path, new_line, old_left, new_left = "", 0, 0, 0
    for raw in diff.splitlines():
        if old_left > 0 or new_left > 0:
            tag, text = raw[:1], raw[1:]
            if tag == "+":
                yield path, new_line, text
                new_line, new_left = new_line + 1, new_left - 1
            elif tag == "-":
                old_left -= 1
            elif tag != "\\":  # context (``\ No newline at end of file`` counts for neither side)
                new_line, old_left, new_left = new_line + 1, old_left - 1, new_left - 1
            continue
        if (hunk := _HUNK.match(raw)) is not None:
            old_left = int(hunk.group(1) or 1)
            new_line, new_left = int(hunk.group(2)), int(hunk.group(3) or 1)
        elif raw.startswith("diff --git "):
            path = raw.rpartition(" b/")[2] if " b/" in raw else path
        elif raw.startswith("+++ "):
            path = _diff_path(raw) or path


def binary_files(diff: str) -> list[str]:
    """The files ``diff`` adds or changes as binary content (``Binary files ... differ``, ``GIT binary patch``), in
    diff order: the scan reads none of them (a deleted one is left out: nothing of it leaves)."""
    paths: dict[str, None] = {}
    path, deleted = "", False
    for m in _BINARY_MARKS.finditer(diff):
        line = m.group()
        if line.startswith("diff --git "):
            path, deleted = _git_header_path(line), False
        elif line.startswith("deleted file mode"):
            deleted = True
        elif path and not deleted and not line.endswith(" and /dev/null differ"):
            paths[path[:4096]] = None
    return list(paths)


def _git_header_path(header: str) -> str:
    """The new path of a ``diff --git a/path b/path`` line (``""`` when it cannot be read)."""
    if header.endswith('"') and ' "b/' in header:
        return header.rpartition(' "b/')[2][:-1]
    return header.rpartition(" b/")[2] if " b/" in header else ""


def _key_files(paths: list[str]) -> list[ScanFinding]:
    """A ``key_file`` finding for each binary file named like a key store (``release.jks``, ``id_ed25519``)."""
    found = []
    for path in paths:
        name = PurePosixPath(path).name.lower()
        if PurePosixPath(name).suffix in KEY_FILE_SUFFIXES or name in KEY_FILE_NAMES:
            found.append(ScanFinding(kind="key_file", path=path, line=0, excerpt="binary key store (not read)"))
    return found


def describe_unscanned(paths: list[str], limit: int = 5) -> str:
    """The note naming the binary files the scan did not read (``""`` when there are none), for where a reviewer
    looks: ``2 binary files not scanned for secrets: logo.png, data.bin``."""
    if not paths:
        return ""
    shown = ", ".join(path[:120] for path in paths[:limit])
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"{len(paths)} binary file{'s' if len(paths) > 1 else ''} not scanned for secrets: {shown}{more}"


def scan_diff(diff: str) -> list[ScanFinding]:
    """A ``key_file`` finding for each binary file ``diff`` adds named like a key store, then every secret,
    personal path and internal address the lines it adds carry, in diff order; at most :data:`MAX_FINDINGS`."""
    findings = _key_files(binary_files(diff))[:MAX_FINDINGS]
    if len(findings) >= MAX_FINDINGS:
        return findings
    for path, number, text in added_lines(diff):
        is_code = PurePosixPath(path).suffix.lower() in CODE_SUFFIXES
        hits = _deduplicated(list(_hits(text, is_code)))
        for hit in hits:
            findings.append(
                ScanFinding(kind=hit.kind, path=path[:4096], line=number, excerpt=_excerpt(text, hits, hit))
            )
            if len(findings) >= MAX_FINDINGS:
                return findings
    return findings


def redact(text: str, *, is_code: bool = False) -> str:
    """``text`` with every secret, personal path and internal address masked, line by line (for text that leaves
    the host beside a change, such as a pull request's body)."""
    lines = text.split("\n")
    return "\n".join(_masked(line, hits) if (hits := _deduplicated(list(_hits(line, is_code)))) else line
                     for line in lines)  # fmt: skip


def describe(findings: list[ScanFinding], limit: int = 10) -> str:
    """One readable report of ``findings``: ``aws_key in config.py:3; personal_path in run.sh:12``."""
    shown = "; ".join(f"{f.kind} in {f.path}:{f.line}" for f in findings[:limit])
    return shown + (f" and {len(findings) - limit} more" if len(findings) > limit else "")
