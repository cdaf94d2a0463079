"""The sidecar doctor: sandbox level, local tools, the hub, the token, the models and the repositories, as a printed
report, against a real hub, a fake Ollama server and real git repositories."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from shared.fakes.ollama_server import FakeOllamaServer
from sidecar.host.doctor import check_machine
from sidecar.settings import load_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bare_repo(path: Path) -> Path:
    """A bare repository with one commit on main (a local remote)."""
    work = path.with_name(path.name + "-work")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    for args in (
        ["init", "-q", "-b", "main", str(work)],
        ["-C", str(work), "commit", "-q", "--allow-empty", "-m", "first"],
        ["clone", "-q", "--bare", str(work), str(path)],
    ):
        subprocess.run(["git", *args], check=True, timeout=30, capture_output=True, env={**env, "HOME": str(work)})
    return path


async def test_doctor_against_a_running_hub(hub, tmp_path) -> None:
    """With a valid token for a live hub every required check passes and the report names the sandbox level and
    that the token was accepted."""
    token = await hub.mint_token("doc")
    settings = load_settings(None, agent_id="doc", token=token, hub_url=hub.url, state_dir=tmp_path / "state")
    lines: list[str] = []
    report = await check_machine(settings, out=lines.append)
    assert report.ok, lines
    names = [check.name for check in report.checks]
    assert names == ["sandbox", "bwrap", "pm2", "chromium", "hub", "token"]
    assert "/health answered HTTP 200" in lines[0]
    assert "[ok  ] token: accepted by the hub for doc" in lines[0]


async def test_doctor_reports_a_refused_token(hub, tmp_path) -> None:
    """A token the hub does not know fails the report, saying how to get a new one and never printing it."""
    settings = load_settings(None, agent_id="doc", token="not-a-token-xyz", hub_url=hub.url)
    lines: list[str] = []
    report = await check_machine(settings, out=lines.append)
    assert not report.ok
    assert "[FAIL] token: the hub refused the token of doc: mint a new one (POST /admin/tokens" in lines[0]
    assert "not-a-token-xyz" not in lines[0]


async def test_doctor_checks_models_on_the_endpoint(hub, tmp_path) -> None:
    """Configured models are looked up in the endpoint's /api/tags (``x`` matches ``x:latest``); a missing one fails
    the report naming the pull to run."""
    token = await hub.mint_token("doc")
    async with FakeOllamaServer(model="qwen-fake:latest") as ollama:
        good = load_settings(None, agent_id="doc", token=token, hub_url=hub.url, ollama_url=ollama.url,
                             models=["qwen-fake"], state_dir=tmp_path / "s")  # fmt: skip
        lines: list[str] = []
        report = await check_machine(good, out=lines.append)
        assert report.ok, lines
        assert f"[ok  ] ollama: {ollama.url}/api/tags answers; serves qwen-fake" in lines[0]
        bad = good.model_copy(update={"models": ["qwen-fake", "llama-missing:8b"]})
        lines.clear()
        report = await check_machine(bad, out=lines.append)
    assert not report.ok
    assert "does not serve llama-missing:8b (run: ollama pull llama-missing:8b)" in lines[0]


async def test_doctor_probes_the_hubs_repositories(hub, tmp_path) -> None:
    """Each repository registered on the hub is probed with git ls-remote: a real bare repo passes, a path with no
    repository fails the report naming it."""
    good = bare_repo(tmp_path / "good.git")
    for name, url in (("good", good.as_uri()), ("gone", (tmp_path / "gone.git").as_uri())):
        r = await hub.http.post("/api/repos", json={"name": name, "url": url, "default_branch": "main"})
        assert r.status_code == 201, r.text
    token = await hub.mint_token("doc")
    settings = load_settings(None, agent_id="doc", token=token, hub_url=hub.url, state_dir=tmp_path / "state")
    lines: list[str] = []
    report = await check_machine(settings, out=lines.append)
    checks = {c.name: c for c in report.checks}
    assert checks["repo good"].ok, lines
    assert not checks["repo gone"].ok and "gone.git" in checks["repo gone"].detail
    assert not report.ok


async def test_doctor_reports_an_unreachable_hub() -> None:
    """A hub that does not answer fails the report, with the URL in the message (and no token check)."""
    port = free_port()
    settings = load_settings(None, agent_id="doc", token="t", hub_url=f"http://127.0.0.1:{port}")
    lines: list[str] = []
    report = await check_machine(settings, out=lines.append)
    assert not report.ok
    assert f"[FAIL] hub: http://127.0.0.1:{port}/health unreachable" in lines[0]
    assert "token" not in [c.name for c in report.checks]


async def test_doctor_without_settings_checks_only_this_machine() -> None:
    """Without settings only local checks run."""
    report = await check_machine(None, out=lambda _: None)
    assert [check.name for check in report.checks] == ["sandbox", "bwrap", "pm2", "chromium"]
