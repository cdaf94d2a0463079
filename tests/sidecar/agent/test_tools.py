"""Agent tools against the real sandbox in real temporary workspaces."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sidecar.agent.tools import (
    OUTPUT_CAP_CHARS,
    TOOL_ARGS,
    Observation,
    ToolError,
    ToolRegistry,
    summarize_args,
    summarize_result,
)
from sidecar.sandbox.base import SandboxLevel
from tests.sidecar.conftest import searchable


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    searchable(tmp_path)
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "hello.txt").write_text("line one\nline two\nline three\n")
    (ws / "src" / "app.py").write_text("def main():\n    return 1\n")
    (ws / "dup.txt").write_text("x = 1\nx = 1\n")
    (ws / "blob.bin").write_bytes(b"\0\1\2\3")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    (ws / "link.txt").symlink_to(outside / "secret.txt")
    (ws / "linkdir").symlink_to(outside)
    return ws


@pytest.fixture
def tools(workspace: Path, sandbox) -> ToolRegistry:
    return ToolRegistry(workspace, sandbox)


# (tool, arguments, success, error code, text expected in the observation's model text)
CASES = [
    ("read_file", {"path": "hello.txt"}, True, None, "     2\tline two"),
    ("read_file", {"path": "hello.txt", "offset": 2, "limit": 1}, True, None, "offset=3 to continue"),
    ("read_file", {"path": "hello.txt", "offset": "2"}, True, None, "line three"),
    ("read_file", {"path": "nope.txt"}, False, "not_found", "nope.txt"),
    ("read_file", {"path": "src"}, False, "is_a_directory", "list_directory"),
    ("read_file", {"path": "blob.bin"}, False, "binary_file", "binary"),
    ("read_file", {"path": "hello.txt", "offset": 9}, False, "out_of_range", "3 lines"),
    ("read_file", {"path": "../outside/secret.txt"}, False, "sandbox_denied", "ERROR [sandbox_denied]"),
    ("read_file", {"path": "link.txt"}, False, "sandbox_denied", "ERROR [sandbox_denied]"),
    ("read_file", {"path": "linkdir/secret.txt"}, False, "sandbox_denied", "ERROR [sandbox_denied]"),
    ("read_file", {}, False, "invalid_arguments", "missing required argument 'path'"),
    ("read_file", {"path": "hello.txt", "bogus": 1}, False, "invalid_arguments", "unknown argument 'bogus'"),
    ("read_file", {"path": "hello.txt", "limit": 0}, False, "invalid_arguments", "'limit'"),
    ("read_file", '{"path": "hello.txt"}', True, None, "line one"),
    ("read_file", "{not json", False, "invalid_arguments", "not valid JSON"),
    ("read_file", ["hello.txt"], False, "invalid_arguments", "JSON object"),
    ("write_file", {"path": "new/deep/file.txt", "content": "hi\n"}, True, None, "created new/deep/file.txt (3 bytes)"),
    ("write_file", {"path": "hello.txt", "content": ""}, True, None, "overwrote hello.txt (0 bytes)"),
    ("write_file", {"path": "../escape.txt", "content": "x"}, False, "sandbox_denied", "sandbox_denied"),
    ("write_file", {"path": "link.txt", "content": "x"}, False, "sandbox_denied", "sandbox_denied"),
    ("write_file", {"path": "src", "content": "x"}, False, "is_a_directory", "is a directory: src"),
    ("write_file", {"path": "a.txt"}, False, "invalid_arguments", "missing required argument 'content'"),
    ("edit_file", {"path": "hello.txt", "old": "line two", "new": "line 2"}, True, None, "at line 2"),
    ("edit_file", {"path": "hello.txt", "old": "line four", "new": "x"}, False, "no_match", "0 matches"),
    ("edit_file", {"path": "dup.txt", "old": "x = 1", "new": "x = 2"}, False, "multiple_matches", "2 times"),
    ("edit_file", {"path": "hello.txt", "old": "", "new": "x"}, False, "invalid_arguments", "'old'"),
    ("edit_file", {"path": "link.txt", "old": "top", "new": "x"}, False, "sandbox_denied", "sandbox_denied"),
    ("list_directory", {}, True, None, "src/"),
    ("list_directory", {"path": "src"}, True, None, "app.py  25 bytes"),
    ("list_directory", {"path": "hello.txt"}, False, "not_a_directory", "not a directory: hello.txt"),
    ("list_directory", {"path": "missing"}, False, "not_found", "missing"),
    ("list_directory", {"path": ".."}, False, "sandbox_denied", "sandbox_denied"),
    ("list_directory", {"path": "linkdir"}, False, "sandbox_denied", "sandbox_denied"),
    ("run_command", {"command": "echo hi; echo oops >&2"}, True, None, "[stdout]\nhi"),
    ("run_command", {"command": "echo partial; exit 3"}, False, "nonzero_exit", "exit code: 3\n[stdout]\npartial"),
    ("run_command", {"command": "echo hi", "timeout_s": 301}, False, "invalid_arguments", "'timeout_s'"),
    ("run_command", {"command": ""}, False, "invalid_arguments", "'command'"),
    ("search_files", {"pattern": "line t(wo|hree)"}, True, None, "hello.txt:2:line two"),
    ("search_files", {"pattern": "return", "path": "src"}, True, None, "src/app.py:2:    return 1"),
    ("search_files", {"pattern": "top secret"}, True, None, "no matches"),
    ("search_files", {"pattern": "zzz_absent"}, True, None, "no matches"),
    ("search_files", {"pattern": "a(b"}, False, "search_failed", "grep"),
    ("search_files", {"pattern": "x", "path": "../outside"}, False, "sandbox_denied", "sandbox_denied"),
    ("delete_everything", {}, False, "unknown_tool", "available tools: read_file"),
]


@pytest.mark.parametrize(("tool", "arguments", "success", "code", "text"), CASES)
async def test_tool_call_table(tools: ToolRegistry, tool, arguments, success, code, text) -> None:
    """Each tool call in the table yields the expected observation and never raises."""
    obs = await tools.execute(tool, arguments)
    assert isinstance(obs, Observation)
    assert (obs.success, obs.tool) == (success, tool), obs
    assert (obs.error.code if obs.error else None) == code, obs
    assert text in obs.to_model_text(), obs.to_model_text()
    assert obs.duration_ms >= 0


async def test_write_then_read_round_trip(tools: ToolRegistry, workspace: Path) -> None:
    """A written file lands in the workspace with the exact content and reads back numbered."""
    obs = await tools.execute("write_file", {"path": "pkg/mod.py", "content": "a = 1\nb = 2\n"})
    assert obs.success
    assert (workspace / "pkg" / "mod.py").read_text() == "a = 1\nb = 2\n"
    read = await tools.execute("read_file", {"path": "pkg/mod.py"})
    assert read.output == "     1\ta = 1\n     2\tb = 2"


async def test_edit_replaces_exactly_one_span(tools: ToolRegistry, workspace: Path) -> None:
    """edit_file changes only the matched span; failed edits leave the file untouched."""
    assert (await tools.execute("edit_file", {"path": "src/app.py", "old": "return 1", "new": "return 2"})).success
    assert (workspace / "src" / "app.py").read_text() == "def main():\n    return 2\n"
    assert not (await tools.execute("edit_file", {"path": "dup.txt", "old": "x = 1", "new": "y"})).success
    assert (workspace / "dup.txt").read_text() == "x = 1\nx = 1\n"


async def test_escapes_do_not_touch_outside_files(tools: ToolRegistry, tmp_path: Path) -> None:
    """Denied writes through ../ or a symlink leave the files outside the workspace unchanged."""
    await tools.execute("write_file", {"path": "link.txt", "content": "pwned"})
    await tools.execute("write_file", {"path": "../outside/new.txt", "content": "pwned"})
    assert (tmp_path / "outside" / "secret.txt").read_text() == "top secret\n"
    assert not (tmp_path / "outside" / "new.txt").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
async def test_written_files_belong_to_workspace_owner(tmp_path: Path, sandbox) -> None:
    """Files and directories created by write_file get the workspace owner's uid and gid."""
    ws = tmp_path / "owned"
    ws.mkdir()
    os.chown(ws, 12345, 12346)
    tools = ToolRegistry(ws, sandbox)
    assert (await tools.execute("write_file", {"path": "d/f.txt", "content": "x"})).success
    for path in (ws / "d", ws / "d" / "f.txt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (12345, 12346)


async def test_command_cannot_write_outside_workspace(tools: ToolRegistry, sandbox, tmp_path: Path) -> None:
    """A command writing next to the workspace fails and leaves no file behind."""
    if sandbox.level == SandboxLevel.RLIMITS:
        pytest.skip("the rlimits level does not confine the file system")
    target = tmp_path / "outside" / "pwned.txt"
    obs = await tools.execute("run_command", {"command": f"echo x > {target}"})
    assert not obs.success and obs.error.code == "nonzero_exit"
    assert "exit code:" in obs.output
    assert not target.exists()


async def test_command_writes_inside_workspace(tools: ToolRegistry, workspace: Path) -> None:
    """A command can create files in the workspace, which is its working directory."""
    obs = await tools.execute("run_command", {"command": "echo made > made.txt && cat made.txt"})
    assert obs.success, obs
    assert (workspace / "made.txt").read_text() == "made\n"


async def test_command_timeout(tools: ToolRegistry) -> None:
    """A command running past its timeout_s is killed and reported with code timeout."""
    started = time.monotonic()
    obs = await tools.execute("run_command", {"command": "echo started; sleep 30", "timeout_s": 1})
    assert time.monotonic() - started < 10
    assert not obs.success and obs.error.code == "timeout"
    assert "1 s" in obs.error.message


async def test_command_output_is_capped(tools: ToolRegistry) -> None:
    """Huge command output is cut to the cap, keeping head and tail with a truncation note."""
    obs = await tools.execute("run_command", {"command": "seq 1 20000"})
    assert obs.success
    assert len(obs.output) <= OUTPUT_CAP_CHARS
    assert "truncated" in obs.output
    assert "\n1\n2\n" in obs.output and obs.output.rstrip().endswith("20000")


async def test_large_file_read_in_pieces(tools: ToolRegistry, workspace: Path) -> None:
    """Reading a file larger than the cap stops early and names the offset to continue from."""
    (workspace / "big.txt").write_text("".join(f"row {n} {'x' * 60}\n" for n in range(1, 2001)))
    obs = await tools.execute("read_file", {"path": "big.txt"})
    assert obs.success and len(obs.output) <= OUTPUT_CAP_CHARS
    last = obs.output.splitlines()[-1]
    assert last.startswith("[lines 1-") and "of 2000; read_file with offset=" in last


def test_schemas_cover_every_tool() -> None:
    """Both schema forms list every tool with a description for each argument and the same required set."""
    tools = ToolRegistry(Path("."), sandbox=None)  # type: ignore[arg-type]
    assert tools.names == list(TOOL_ARGS)
    ollama, anthropic = tools.schemas_ollama(), tools.schemas_anthropic()
    for fn, plain in zip(ollama, anthropic, strict=True):
        assert fn["type"] == "function"
        spec = fn["function"]
        assert spec["name"] == plain["name"] and spec["description"] == plain["description"]
        assert spec["parameters"] == plain["input_schema"]
        assert spec["parameters"]["type"] == "object"
        assert set(spec["parameters"]["properties"]) == set(TOOL_ARGS[spec["name"]].model_fields)
        assert all(prop.get("description") and prop.get("type") for prop in spec["parameters"]["properties"].values())
    run = next(s["function"]["parameters"] for s in ollama if s["function"]["name"] == "run_command")
    assert run["required"] == ["command"]
    assert run["properties"]["timeout_s"]["maximum"] == 300 and run["properties"]["timeout_s"]["default"] == 30


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("read_file", {"path": "src/app.py", "offset": 10}, "read_file path=src/app.py offset=10"),
        ("write_file", {"path": "a.py", "content": "x" * 5000}, "write_file path=a.py content=<5000 chars>"),
        ("run_command", {"command": "pytest -q\nrm -rf build"}, 'run_command command="pytest -q …"'),
        ("edit_file", {"path": "a", "old": "1", "new": "22"}, "edit_file path=a old=<1 chars> new=<2 chars>"),
    ],
)
def test_summarize_args(name: str, args: dict, expected: str) -> None:
    """Argument summaries name the tool, show short values and replace bulky text by its length."""
    assert summarize_args(name, args) == expected


def test_summaries_fit_the_stream() -> None:
    """Summaries stay within 120 characters whatever the input."""
    assert len(summarize_args("run_command", {"command": "echo " + "y" * 500})) <= 120
    ok = Observation(success=True, tool="run_command", output="exit code: 0\n[stdout]\n" + "z" * 500)
    err = Observation(success=False, tool="read_file", error=ToolError(code="not_found", message="m" * 300))
    assert summarize_result(ok) == "OK run_command: exit code: 0"
    assert summarize_result(err).startswith("ERR read_file [not_found]: mmm")
    assert len(summarize_result(err)) <= 120
