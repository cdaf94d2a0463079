"""The scan's placeholder rule on a table: real-shaped tokens and generic secrets with a stand-in word somewhere
inside are found; values that are placeholders as a whole (templates, references, known stand-ins, patterned
bodies, the documented AWS examples) are let through."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.fakes.calc_project import FAKE_TOKEN
from shared.secret_placeholder import NAMING_WORDS, STAND_IN_WORDS
from shared.secret_scan import GENERIC_MIN_ENTROPY, entropy, scan_diff
from tests.shared.test_secret_scan import diff_of

# Secrets are assembled at run time, so this file holds none a scanner of its own would stop.
RANDOM = "Zq81Xw7Lm2Np" + "Hk2dPq8Zt0Lw" + "Yv4Rc9Bs6Jm3"
"""36 characters that look random (the body of a GitHub token)."""


def body_with(word: str, size: int = 36) -> str:
    """``size`` random-looking characters with ``word`` in their middle."""
    half = (size - len(word)) // 2
    return (RANDOM[:half] + word + RANDOM[half:])[:size]


def assigned(name: str, value: str, form: str = '{name} = "{value}"') -> str:
    """``value`` assigned to ``name`` as ``form`` says (built here, so this file's own lines hold no assignment of a
    secret)."""
    return form.format(name=name, value=value)


YAML, JSON, ENV, BARE = "  {name}: {value}", '  "{name}": "{value}",', "{name}={value}", "{name} = {value}"
POSITIVES = [
    ("github_token", "ci.sh", "export GH=ghp_" + body_with("fake")),
    ("github_token", "ci.sh", "export GH=ghp_" + body_with("token")),
    ("github_token", "ci.sh", "export GH=ghp_" + body_with("example")),
    ("github_token", "ci.sh", "export GH=gho_" + body_with("Secret")),
    ("github_token", "ci.yml", assigned("token", "github_pat_11ABCDEFG0" + body_with("_password_", 60), YAML)),
    ("github_token", "deploy.cfg", f"token = {FAKE_TOKEN}"),
    ("aws_key", "settings.py", 'KEY_ID = "AKIA' + "Q3XNFAKE2VDL5KWT" + '"'),
    ("aws_key", "settings.py", 'KEY_ID = "AKIA' + "TOKENZRP2VDL5KWT" + '"'),
    ("aws_secret", "creds.ini", assigned("aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxExampleRfiCYzQ8", BARE)),
    ("slack_token", "notify.py", 'WebClient("xoxb-' + "2417903842-9138480012-HkinsertZt0LwYv" + '")'),
    ("slack_token", "notify.py", 'WebClient("xoxp-' + "2417903842-9138480012-Hk2dPq8-replace-Zt0LwYv" + '")'),
    ("generic_secret", "config.py", assigned("api_key", "s3cr3t-Prod-Key-9f8e7d...token")),
    ("generic_secret", "config.py", assigned("secret", "a8F3kLq9Zx<2mN7pW4")),
    ("generic_secret", "app.yml", assigned("client_secret", "q7Xm2Lp9Rz4Kw8Nv_example", YAML)),
    ("generic_secret", "db.py", assigned("DB_PASSWORD", "Tr0ub4dor&3x!replace")),
    ("generic_secret", "config.json", assigned("token", "9f8e7d6c5b4a3f2e1d0c-dummy", JSON)),
    ("generic_secret", "config.json", assigned("api_key", "4eC39HqLyjsampleWDarjtT1zdp7dc", JSON)),
    ("generic_secret", ".env", assigned("STRIPE_SECRET", "sk4eC39HqLyjWDarjtT1zdp7dcTOKEN", ENV)),
    ("generic_secret", "app.ini", assigned("password", "Xq8vLm2Pz7Rt-your-key-here", BARE)),
    ("generic_secret", "app.ini", assigned("password", "Xq8vLm2Pz7Rt****Hk2dPq8Zt0Lw")),
    ("generic_secret", "users.py", assigned("password", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7K")),
    ("generic_secret", "app.py", assigned("token", "Zq81Xw7L{{m2Np}}Hk2dPq8Zt0Lw")),
    ("generic_secret", "app.py", assigned("auth_token", "Bearer Zq81Xw7Lm2NpHk2dPq8Zt0Lw")),
]
"""(kind, path, added line): each a secret that must be found once."""

NEGATIVES = [
    ("aws_key", "README.md", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret", "README.md", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("aws_secret", "creds.ini", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("aws_key", "settings.py", 'KEY_ID = "AKIA' + "X" * 16 + '"'),
    ("aws_key", "settings.py", 'KEY_ID = "AKIA' + "1234567890ABCDEF" + '"'),
    ("github_token", "ci.yml", "token: ghp_" + "x" * 36),
    ("github_token", "ci.yml", "token: ghp_" + "0" * 36),
    ("github_token", "ci.yml", "token: ghp_" + "ab" * 18),
    ("github_token", "ci.yml", "token: ghp_" + "abc1" * 9),
    ("github_token", "ci.yml", "token: ghp_" + "0123456789abcdefghijklmnopqrstuvwxyz"),
    ("github_token", "ci.yml", "token: ghp_" + "1234" + "X" * 32),
    ("github_token", "ci.yml", "token: ghp_" + "0123456789" + "x" * 26),
    ("github_token", "docs.md", "GITHUB_TOKEN=<ghp_" + RANDOM + ">"),
    ("github_token", "docs.md", "GITHUB_TOKEN={{ghp_" + RANDOM + "}}"),
    ("slack_token", "docs.md", "SLACK_TOKEN=xoxb-your-slack-bot-token-here"),
    ("workflow", ".github/workflows/ci.yml", "        token: ${{ secrets.GH }}"),
    ("workflow", ".github/workflows/ci.yml", '        password: "${{ secrets.DB_PASSWORD }}"'),
    ("template", "settings.py", 'secret = "${APP_SECRET}"'),
    ("template", "settings.py", 'secret = "${APP_SECRET:-fallback-value}"'),
    ("template", "app.yml", 'api_key: "{{ vault_api_key }}"'),
    ("template", "settings.py", 'api_key = "<your-api-key>"'),
    ("template", "settings.py", 'api_key = "<paste the key from the console here>"'),
    ("template", "settings.ini", "password = %(db_password)s"),
    ("template", "settings.ini", 'password = "%(db_password)s"'),
    ("template", "run.sh", 'PASSWORD="$(cat /run/secrets/db_password)"'),
    ("template", "run.sh", 'API_KEY="$PROD_API_KEY"'),
    ("template", "bearer.py", 'token = "Bearer ${ACCESS_TOKEN}"'),
    ("reference", "settings.py", 'password = os.environ["X"]'),
    ("reference", "settings.py", 'api_key = os.getenv("API_KEY")'),
    ("stand-in", "settings.py", 'password = "changeme"'),
    ("stand-in", "settings.py", 'password = "ChangeMe123!"'),
    ("stand-in", "settings.py", 'api_key = "your_api_key_here"'),
    ("stand-in", "settings.py", 'api_key = "YOUR_API_KEY_HERE"'),
    ("stand-in", "settings.py", 'token = "your-token-here"'),
    ("stand-in", "settings.py", 'token = "yourtokenhere"'),
    ("stand-in", "settings.py", 'token = "xxxx"'),
    ("stand-in", "settings.py", 'token = "xxxxxxxxxxxxxxxxxxxx"'),
    ("stand-in", "settings.py", 'token = "****"'),
    ("stand-in", "settings.py", 'token = "********************"'),
    ("stand-in", "settings.py", 'secret = "redacted"'),
    ("stand-in", "settings.py", 'secret = "[REDACTED]"'),
    ("stand-in", "settings.py", 'secret = "example"'),
    ("stand-in", "settings.py", 'secret = "example123"'),
    ("stand-in", "settings.py", 'secret = "dummy"'),
    ("stand-in", "settings.py", 'secret = "dummy-secret-2024"'),
    ("stand-in", "settings.py", 'secret = "placeholder"'),
    ("stand-in", "settings.py", 'password = "test1234"'),
    ("stand-in", "settings.py", 'password = "not-a-real-password"'),
    ("stand-in", ".env.example", "STRIPE_SECRET=sk_live_****************"),
    ("stand-in", ".env.example", "STRIPE_SECRET=sk_live_xxxxxxxxxxxxxxxx"),
    ("stand-in", "bench.py", 'TOKEN = "bench-forge-token"'),
    ("stand-in", "test_auth.py", 'make_hub(admin_token="configured-admin-token-0123456789")'),
    ("stand-in", "test_api.py", '"api_key": "sk-live-0123456789",'),
    ("prose", "statements.py", 'INSERT_TOKEN = "INSERT INTO tokens (token_hash, role) VALUES (?, ?)"'),
    ("prose", "README.md", "- entry point (token from `#token=` or the login form, kept in `localStorage`)"),
    ("low entropy", "settings.py", 'password = "aaaaaaaaaaaa"'),
]
"""(what, path, added line): each no finding."""


@pytest.mark.parametrize(("kind", "path", "line"), POSITIVES, ids=[f"{c[0]}-{i}" for i, c in enumerate(POSITIVES)])
def test_a_secret_with_a_stand_in_word_inside_is_found(kind: str, path: str, line: str) -> None:
    """A real-shaped token or a random literal holding ``fake``, ``token``, ``example``, ``<``... is a finding."""
    assert [(f.kind, f.path, f.line) for f in scan_diff(diff_of(path, line))] == [(kind, path, 1)]


@pytest.mark.parametrize(("what", "path", "line"), NEGATIVES, ids=[f"{c[0]}-{i}" for i, c in enumerate(NEGATIVES)])
def test_a_placeholder_as_a_whole_is_let_through(what: str, path: str, line: str) -> None:
    """Templates, references, known stand-ins, patterned bodies and documented examples are no findings."""
    assert scan_diff(diff_of(path, line)) == []


def test_the_table_bodies_are_token_shaped() -> None:
    """The positives' token bodies have the length their kind's pattern needs (else they would test nothing)."""
    assert len(RANDOM) == 36 and len(body_with("example")) == 36 and len(FAKE_TOKEN) == 40


ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
WORDS = sorted(STAND_IN_WORDS | NAMING_WORDS | {"EXAMPLE", "FAKE", "Token", "xxxx"})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.text(alphabet=ALNUM, min_size=36, max_size=40).filter(lambda s: len(set(s)) > 8),
       word=st.sampled_from(WORDS), at=st.integers(0, 40), prefix=st.sampled_from(["ghp_", "gho_"]))  # fmt: skip
def test_fuzz_a_stand_in_word_anywhere_in_a_token_never_clears_it(body: str, word: str, at: int, prefix: str) -> None:
    """Whatever stand-in or naming word sits wherever in a random token body, the token is found."""
    token = prefix + body[:at] + word + body[at:]
    assert [f.kind for f in scan_diff(diff_of("f.txt", f"export T={token}"))] == ["github_token"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.text(alphabet=ALNUM + "-_.!", min_size=16, max_size=40).filter(lambda s: len(set(s)) > 8),
       word=st.sampled_from(WORDS), at=st.integers(0, 40), sep=st.sampled_from(["", "-", "_", "..."]))  # fmt: skip
def test_fuzz_a_stand_in_word_anywhere_in_a_random_secret_never_clears_it(value: str, word: str, at: int,
                                                                          sep: str) -> None:  # fmt: skip
    """A random literal (letters and digits) assigned to a secret's name is found whatever stand-in word is put
    inside it (unless it is low in entropy, which is another rule)."""
    assume(any(ch.isdigit() for ch in value))
    at %= len(value)  # inside: ``...EXAMPLE`` at the very end is AWS's documented form, another rule
    secret = value[:at] + sep + word + sep + value[at:]
    assume(entropy(secret) >= GENERIC_MIN_ENTROPY + 0.5)
    assert [f.kind for f in scan_diff(diff_of("app.py", f'api_key = "{secret}"'))] == ["generic_secret"]
