"""The pre-publication scan: each kind of secret found on the lines a diff adds, masked in its excerpt; placeholders,
removed lines and context let through; fuzzed for no crash and no secret echoed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.repos import ScanFinding
from shared.secret_scan import MAX_FINDINGS, added_lines, describe, entropy, redact, scan_diff

# Secrets are assembled at run time, so this file holds none a scanner of its own would stop.
GITHUB = "ghp_" + "Zx81Qw7Lm2Np" * 3
GITHUB_PAT = "github_pat_" + "11ABCDEFG0a1b2c3d4e5f6_" + "Qm9vZ2xlIHNlY3JldCBrZXk" * 2
AWS = "AKIA" + "Q3XN7ZRP2VDL5KWT"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYzQ8pLm4Nt2"
SLACK = "xoxb-" + "2417903842-9138480012-Hk2dPq8Zt0LwYv"
JWT = (
    "eyJ"
    + "hbGciOiJIUzI1NiJ9"
    + ".eyJ"
    + "zdWIiOiIxMjM0NTY3ODkwIn0"
    + "."
    + "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
KEY_BEGIN = "-----BEGIN " + "RSA PRIVATE KEY-----"


def diff_of(path: str, *added: str, removed: tuple[str, ...] = (), context: tuple[str, ...] = ()) -> str:
    """A unified diff of one file: ``context`` lines, then ``removed``, then ``added``."""
    lines = [f" {c}" for c in context] + [f"-{r}" for r in removed] + [f"+{a}" for a in added]
    header = f"@@ -1,{len(context) + len(removed)} +1,{len(context) + len(added)} @@"
    return "\n".join([f"diff --git a/{path} b/{path}", "index 0000000..1111111 100644", f"--- a/{path}",
                      f"+++ b/{path}", header, *lines]) + "\n"  # fmt: skip


CASES = [
    ("private_key", "id_rsa", KEY_BEGIN, ""),
    ("private_key", "key.py", f'KEY = "{KEY_BEGIN}\\nMIIEpAIBAAKCAQEA7x"', "MIIEpAIBAAKCAQEA7x"),
    ("aws_key", "settings.py", f'AWS_ACCESS_KEY_ID = "{AWS}"', AWS[4:]),
    ("aws_secret", "creds.ini", f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    ("github_token", "ci.sh", f"curl -H 'Authorization: Bearer {GITHUB}' https://api.github.com", GITHUB[4:]),
    ("github_token", "ci.yml", f"token: {GITHUB_PAT}", GITHUB_PAT[11:]),
    ("slack_token", "notify.py", f'client = WebClient("{SLACK}")', SLACK[5:]),
    ("slack_token", "hook.txt", "https://hooks.slack.com/services/" + "T0001/B0002/" + "Xq8vLm2Pz7Rt", "T0001/B0002/"),
    ("jwt", "api.http", f"Authorization: Bearer {JWT}", JWT[3:]),
    ("generic_secret", "db.py", 'DB_PASSWORD = "Tr0ub4dor&3x!"', "Tr0ub4dor&3x!"),
    ("generic_secret", "config.json", '  "api_key": "9f8e7d6c5b4a3f2e1d0c",', "9f8e7d6c5b4a3f2e1d0c"),
    ("generic_secret", ".env", "STRIPE_SECRET=sk4eC39HqLyjWDarjtT1zdp7dc", "sk4eC39HqLyjWDarjtT1zdp7dc"),
    ("generic_secret", "app.yml", "  client_secret: q7Xm2Lp9Rz4Kw8Nv", "q7Xm2Lp9Rz4Kw8Nv"),
    ("generic_secret", "app.ini", 'password = "correct horse battery staple"', "correct horse battery staple"),
    ("personal_path", "run.sh", "cd /home/alice/projects/demo && make", "alice"),
    ("personal_path", "notes.md", "see /Users/bob.smith/Desktop/plan.txt", "bob.smith"),
    ("personal_path", "build.bat", r"copy C:\Users\carol\Documents\a.txt .", "carol"),
    ("personal_path", "paths.py", r'P = "C:\\Users\\dave\\AppData"', "dave"),
    ("internal_address", "deploy.yml", "  host: 10.12.0.7", "12.0.7"),
    ("internal_address", "hosts.py", 'DB = "postgres://app@192.168.1.20:5432/app"', "168.1.20"),
    ("internal_address", "app.py", 'URL = "http://172.20.3.4/api"', "20.3.4"),
    ("internal_address", "app.py", 'URL = "https://build01.corp/jobs"', "build01"),
    ("internal_address", "README.md", "The cache is at redis-1.prod.internal:6379.", "redis-1.prod"),
    ("internal_address", "nginx.conf", "proxy_pass http://printer.local;", "printer"),
]


@pytest.mark.parametrize(("kind", "path", "line", "secret"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_each_kind_is_found_and_masked(kind: str, path: str, line: str, secret: str) -> None:
    """The added line is reported with its kind, file and line number, and the excerpt hides the secret."""
    findings = scan_diff(diff_of(path, "first = 1", line))
    assert [(f.kind, f.path, f.line) for f in findings] == [(kind, path, 2)]
    assert "****" in findings[0].excerpt
    if secret:
        assert secret not in findings[0].excerpt


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("settings.py", 'AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"'),
        ("settings.py", 'password = "changeme"'),
        ("settings.py", 'api_key = "<your-api-key>"'),
        ("settings.py", 'secret = "${APP_SECRET}"'),
        ("settings.py", 'token = "xxxxxxxxxxxxxxxx"'),
        ("settings.py", 'password = "aaaaaaaaaaaa"'),
        ("settings.py", "password = os.environ['DB_PASSWORD']"),
        ("settings.py", "self.api_key = settings.api_key"),
        ("settings.py", "max_tokens = 4096"),
        ("settings.py", 'secretary = "Margaret Thatcherine"'),
        ("settings.py", "def login(password: str) -> None:"),
        ("settings.py", 'if password == "x":'),
        ("ci.yml", "token: ghp_" + "x" * 36),
        ("ci.yml", "  password: ${{ secrets.DB_PASSWORD }}"),
        ("app.py", "state = threading.local()"),
        ("app.py", "value = self.internal.count"),
        ("app.py", 'URL = "http://api.example.local/v1"'),
        ("app.py", 'HOST = "127.0.0.1"'),
        ("app.py", 'PUBLIC = "8.8.8.8"'),
        ("app.py", 'VERSION = "10.2.300.4000"'),
        ("bench.py", 'TOKEN = "bench-forge-token"'),
        ("app.py", 'FakeForge(read_token="read-only")'),
        ("app.py", 'NETS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")'),
        ("app.py", '"""a bare ``name.local`` is an attribute"""'),
        ("scan.py", r'PAT = r"/Users/(?P<users>[^/]+)/"'),
        ("run.sh", "cd /home/runner/build/demo"),
        ("run.sh", "cp x /home/user/project/"),
        ("docs.md", "Put it in ~/.config or $HOME/.config."),
    ],
)
def test_placeholders_and_code_pass(path: str, line: str) -> None:
    """Obvious placeholders, references to secrets, attributes and public addresses are no findings."""
    assert scan_diff(diff_of(path, line)) == []


def test_only_added_lines_count() -> None:
    """A secret on a removed line or a context line is no finding: the change takes it out, or it was there."""
    diff = diff_of("cfg.py", "a = 1", removed=(f'TOKEN = "{GITHUB}"',), context=(f'OLD = "{AWS}"',))
    assert scan_diff(diff) == []


def test_added_line_numbers_follow_the_hunks() -> None:
    """Line numbers are those of the new file, across hunks and files; a '+++' inside a hunk is content."""
    diff = (
        "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -10,3 +10,4 @@ def f():\n x\n-y\n+y2\n+++z\n w\n"
        "@@ -40 +41,2 @@\n-old\n+n1\n+n2\n\\ No newline at end of file\n"
        "diff --git a/b.txt b/b.txt\nnew file mode 100644\n--- /dev/null\n+++ b/b.txt\n@@ -0,0 +1 @@\n+hello\n"
    )
    assert list(added_lines(diff)) == [("a.py", 11, "y2"), ("a.py", 12, "++z"), ("a.py", 41, "n1"),
                                       ("a.py", 42, "n2"), ("b.txt", 1, "hello")]  # fmt: skip


def test_two_secrets_on_one_line_are_both_masked_in_each_excerpt() -> None:
    """Each finding's excerpt masks every secret of its line, not only its own."""
    findings = scan_diff(diff_of("x.sh", f"export K={AWS} T={GITHUB}"))
    assert sorted(f.kind for f in findings) == ["aws_key", "github_token"]
    for finding in findings:
        assert AWS[4:] not in finding.excerpt and GITHUB[4:] not in finding.excerpt


def test_a_token_assigned_to_a_name_is_one_finding() -> None:
    """``token = "ghp_..."`` is reported once, as the specific kind, not also as a generic secret."""
    assert [f.kind for f in scan_diff(diff_of("a.py", f'token = "{GITHUB}"'))] == ["github_token"]


def test_long_line_excerpt_is_short_and_masked() -> None:
    """A secret deep in a long line gets a bounded excerpt around it, still masked."""
    findings = scan_diff(diff_of("min.js", "a" * 5000 + f" {GITHUB} " + "b" * 5000))
    assert len(findings) == 1 and len(findings[0].excerpt) <= 200
    assert "****" in findings[0].excerpt and GITHUB[4:] not in findings[0].excerpt


def test_findings_are_capped() -> None:
    """A diff full of secrets gives at most MAX_FINDINGS findings (what a report carries)."""
    diff = diff_of("many.env", *[f"K{i}={AWS[:-4]}{i:04d}" for i in range(MAX_FINDINGS + 50)])
    assert len(scan_diff(diff)) == MAX_FINDINGS


def test_a_real_git_diff_is_scanned(tmp_path: Path) -> None:
    """A diff made by git itself: the added secret is found at its line in the new file."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True, timeout=30).stdout  # fmt: skip

    git("init", "-q")
    (tmp_path / "app.py").write_text("".join(f"line{i} = {i}\n" for i in range(30)))
    git("add", "."), git("commit", "-qm", "base")
    text = (tmp_path / "app.py").read_text().replace("line20 = 20\n", f"line20 = 20\nKEY = '{AWS}'\n")
    (tmp_path / "app.py").write_text(text)
    findings = scan_diff(git("diff", "--no-color"))
    assert [(f.kind, f.path, f.line) for f in findings] == [("aws_key", "app.py", 22)]


def test_describe_names_kind_and_place() -> None:
    """The report line names each finding's kind and place, and how many more there are."""
    findings = [ScanFinding(kind="aws_key", path="a.py", line=i) for i in range(12)]
    assert describe(findings, limit=2) == "aws_key in a.py:0; aws_key in a.py:1 and 10 more"


def test_entropy() -> None:
    """Entropy is 0 for one repeated character and grows with variety."""
    assert entropy("") == entropy("aaaa") == 0.0
    assert entropy("abcd") == 2.0


TOKEN_CHARS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=36,
                      max_size=40).filter(lambda s: len(set(s)) > 8)  # fmt: skip
AROUND = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x0c\x1c\x1d"
                                        "\x1e\x85\u2028\u2029"), max_size=80)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=AROUND, body=TOKEN_CHARS, after=AROUND, kind=st.sampled_from(["ghp_", "gho_", "github_pat_"]))
def test_fuzz_token_anywhere_is_found_and_never_echoed(before: str, body: str, after: str, kind: str) -> None:
    """Whatever surrounds a token on an added line, it is found and no excerpt shows its secret part."""
    assume(body not in before + " " + after)
    findings = scan_diff(diff_of("f.txt", f"{before} {kind}{body} {after}"))
    assert findings
    assert all(body not in f.excerpt and len(f.excerpt) <= 200 for f in findings)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_fuzz_any_text_never_crashes(diff: str) -> None:
    """Any text at all, diff or not, scans without an error into valid findings."""
    for finding in scan_diff(diff):
        ScanFinding.model_validate(finding.model_dump())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=200).map(lambda s: s.replace("\n", " ").replace("\r", " ")), max_size=30))
def test_fuzz_added_lines_never_crash(lines: list[str]) -> None:
    """Arbitrary added lines in a well-formed diff scan without an error, one line number per added line."""
    diff = diff_of("x.py", *lines)
    assert len(list(added_lines(diff))) <= len(lines)
    scan_diff(diff)


def test_redact_masks_text_line_by_line() -> None:
    """Free text (a pull request's body) keeps its lines and words, its secrets masked."""
    text = f"## Verification\nran with GH={GITHUB}\nlog in /home/alice/x\nall good"
    out = redact(text)
    assert out.splitlines()[0] == "## Verification" and out.splitlines()[3] == "all good"
    assert GITHUB[4:] not in out and "alice" not in out and out.count("****") == 2
    assert redact("nothing here\n") == "nothing here\n"
