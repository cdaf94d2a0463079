"""Scripted model turns, replayed by the fake Ollama and Anthropic servers.

A ``Script`` is a list of ``Turn``s. The turn served for a request is the number of assistant messages already in
its ``messages``, so conversations are stateless and several agents can share one server; past the last turn the
server answers with the plain final answer ``"done"``. A request selects a named script with the marker
``[[script:NAME]]`` in its system prompt or first user message, otherwise the server's default script is used.

Transient failures (``http_500``, ``malformed_json``) hit the first ``failures`` requests of a conversation at that
turn; the client's retry carries no new assistant message, so it then gets the turn's normal reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Self

import uvicorn
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request

from shared.fakes import calc_project as calc

Failure = Literal["http_500", "empty", "malformed_json"]
TRANSIENT_FAILURES = frozenset({"http_500", "malformed_json"})
MARKER = re.compile(r"\[\[script:([A-Za-z0-9_.-]+)\]\]")


class ScriptedCall(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict[str, Any] = {}
    raw_arguments: str | None = None
    """Sent instead of ``arguments`` when set: the arguments as a JSON string (as OpenAI-style servers send them),
    broken JSON included."""


class Turn(BaseModel):
    model_config = ConfigDict(frozen=True)

    content: str = ""
    thinking: str | None = None
    tool_calls: list[ScriptedCall] = []
    failure: Failure | None = None
    """``http_500``: error status; ``empty``: a reply with no text and no calls; ``malformed_json``: a broken body."""
    failures: int = Field(default=1, ge=1)
    """How many requests per conversation a transient failure hits before the turn is served normally."""
    delay_s: float = Field(default=0.0, ge=0)
    """Wait this long before replying (models a slow or stalled model)."""
    prompt_tokens: int = 42
    eval_tokens: int = 7


class Script(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    turns: list[Turn]
    final_answer: str = "done"

    def turn(self, index: int) -> Turn:
        """The turn at ``index``, or the final answer once the script is exhausted."""
        return self.turns[index] if index < len(self.turns) else Turn(content=self.final_answer)


# --- ready-made scripts -----------------------------------------------------------------------------------------

HELLO_PY = 'print("hello")\n'
TEST_HELLO_PY = '''\
"""Runs hello.py and checks that it prints hello; exits non-zero on failure (no pytest needed)."""
import subprocess
import sys
from pathlib import Path

hello = Path(__file__).resolve().parent / "hello.py"
result = subprocess.run([sys.executable, str(hello)], capture_output=True, text=True, timeout=30)
if result.returncode != 0 or result.stdout.strip() != "hello":
    print(f"FAIL: expected 'hello', got {result.stdout!r} (exit {result.returncode}) {result.stderr}")
    sys.exit(1)
print("PASS")
'''
HELLO_CALLS = (
    ScriptedCall(name="write_file", arguments={"path": "hello.py", "content": HELLO_PY}),
    ScriptedCall(name="write_file", arguments={"path": "test_hello.py", "content": TEST_HELLO_PY}),
    ScriptedCall(name="run_command", arguments={"command": "python3 test_hello.py"}),
)
HELLO_ANSWER = "Created hello.py, which prints hello, and test_hello.py, which runs it; python3 test_hello.py passes."


def hermes_text(call: ScriptedCall) -> str:
    """A call written in content the Hermes/Qwen way: ``<tool_call>{json}</tool_call>``."""
    return f"<tool_call>\n{json.dumps({'name': call.name, 'arguments': call.arguments})}\n</tool_call>"


def qwen_xml_text(call: ScriptedCall) -> str:
    """A call written in content the qwen3-coder way: ``<function=..><parameter=..>`` XML."""
    params = "".join(
        f"<parameter={key}>\n{value if isinstance(value, str) else json.dumps(value)}\n</parameter>\n"
        for key, value in call.arguments.items()
    )
    return f"<tool_call>\n<function={call.name}>\n{params}</function>\n</tool_call>"


def bare_json_text(call: ScriptedCall) -> str:
    """A call written in content as a bare JSON object, as qwen2.5-coder does."""
    return json.dumps({"name": call.name, "arguments": call.arguments})


def _hello_turns(write: Callable[[ScriptedCall], str] | None = None) -> list[Turn]:
    """The good trajectory; with ``write`` every call is written into content instead of native tool_calls."""
    turns = [
        Turn(tool_calls=[call]) if write is None else Turn(content=write(call), eval_tokens=40) for call in HELLO_CALLS
    ]
    turns[0] = turns[0].model_copy(update={"thinking": "I need hello.py, then a test that runs it."})
    return [*turns, Turn(content=HELLO_ANSWER)]


def hello_world_script() -> Script:
    """A good agent's trajectory for "create hello.py printing hello and a test for it"."""
    return Script(name="hello_world", turns=_hello_turns())


def hermes_script() -> Script:
    """Every call written in content as ``<tool_call>{json}</tool_call>`` (Hermes, Qwen2.5)."""
    return Script(name="hermes", turns=_hello_turns(hermes_text))


def qwen_xml_script() -> Script:
    """Every call written in content as qwen3-coder XML."""
    return Script(name="qwen_xml", turns=_hello_turns(qwen_xml_text))


def bare_json_script() -> Script:
    """Every call written in content as a bare JSON object, the first inside a ```json fence."""
    turns = _hello_turns(bare_json_text)
    turns[0] = turns[0].model_copy(update={"content": f"```json\n{turns[0].content}\n```"})
    return Script(name="bare_json", turns=turns)


def think_call_script() -> Script:
    """A dangerous call-looking thing inside ``<think>``, then the real first call written after it."""
    trap = '<tool_call>{"name": "run_command", "arguments": {"command": "rm -rf ~"}}</tool_call>'
    thought = f"<think>I could start with {trap} but that would be wrong.</think>"
    first = Turn(content=f"{thought}\n{hermes_text(HELLO_CALLS[0])}")
    return Script(name="think_call", turns=[first, *_hello_turns()[1:]])


def empty_reply_script() -> Script:
    """An empty reply (no text, no calls), then the good trajectory."""
    return Script(name="empty_reply", turns=[Turn(failure="empty", eval_tokens=0), *_hello_turns()])


def repeated_call_script(times: int = 4) -> Script:
    """The same ``list_directory`` call ``times`` times in a row, then the good trajectory."""
    same = Turn(tool_calls=[ScriptedCall(name="list_directory", arguments={"path": "."})])
    return Script(name="repeated_call", turns=[same] * times + _hello_turns())


def malformed_args_script() -> Script:
    """A call whose JSON arguments are broken (unescaped quotes), then the good trajectory."""
    broken = '{"name": "write_file", "arguments": {"path": "hello.py", "content": "print("hello")"}}'
    broken = f"<tool_call>\n{broken}\n</tool_call>"
    return Script(name="malformed_args", turns=[Turn(content=broken), *_hello_turns()])


def http_500_script() -> Script:
    """The first request fails with HTTP 500 ("error parsing tool call"); the retry gets the good trajectory."""
    turns = _hello_turns()
    turns[0] = turns[0].model_copy(update={"failure": "http_500"})
    return Script(name="http_500", turns=turns)


def malformed_response_script() -> Script:
    """The first response body is truncated JSON; the retry gets the good trajectory."""
    turns = _hello_turns()
    turns[0] = turns[0].model_copy(update={"failure": "malformed_json"})
    return Script(name="malformed_response", turns=turns)


def slow_script(delay_s: float = 2.0) -> Script:
    """The good trajectory with every reply delayed by ``delay_s``."""
    return Script(name="slow", turns=[t.model_copy(update={"delay_s": delay_s}) for t in _hello_turns()])


def goal_demo_script() -> Script:
    """The hub's own model in the demo: one JSON answer that is both the decomposition of the hello goal (``tasks``)
    and, asked again to verify it, the verdict (``complete``); each reader takes its keys."""
    check = "python3 test_hello.py prints PASS"
    tasks = [
        {"description": HELLO_TASK, "depends_on": [], "files": ["hello.py", "test_hello.py"], "verification": [check]},
        {"description": "Run hello.py and its test again and report what they print", "depends_on": [0],
         "files": ["hello.py"], "verification": [check]},
    ]  # fmt: skip
    answer = {"tasks": tasks, "complete": True, "reason": "hello.py prints hello and its test passes", "gaps": []}
    return Script(name="goal_demo", turns=[Turn(content=json.dumps(answer))])


HELLO_TASK = "Create hello.py printing hello and a test for it (test_hello.py, runnable with python3)."


def _calc_turns(name: str, *writes: tuple[str, str], answer: str) -> Script:
    """Run the failing test, write ``writes`` (path, content), run the test again, answer."""
    test = Turn(tool_calls=[ScriptedCall(name="run_command", arguments={"command": calc.TEST_COMMAND})])
    edits = [Turn(tool_calls=[ScriptedCall(name="write_file", arguments={"path": p, "content": c})]) for p, c in writes]
    return Script(name=name, turns=[test, *edits, test, Turn(content=answer)])


def calc_fix_script() -> Script:
    """The demo repository's agent: sees test_calc.py fail, fixes add() in calc.py, sees it pass."""
    return _calc_turns("calc_fix", ("calc.py", calc.CALC_FIXED_PY), answer="add() now adds; test_calc.py passes.")


def calc_secret_script() -> Script:
    """A change the secret scan must block: the fix, plus deploy.cfg holding a token-shaped string."""
    writes = (("calc.py", calc.CALC_FIXED_PY), ("deploy.cfg", calc.DEPLOY_CFG))
    return _calc_turns("calc_secret", *writes, answer="Wrote deploy.cfg with the token; the tests pass.")


def _goal_reply(name: str, tasks: list[dict[str, Any]], complete: bool, reason: str) -> Script:
    """The hub's model: one JSON answer read as the decomposition (``tasks``) and as the verdict (the rest)."""
    answer = json.dumps({"tasks": tasks, "complete": complete, "reason": reason, "gaps": []})
    return Script(name=name, turns=[Turn(content=answer)])


def goal_calc_script() -> Script:
    """The hub's model for the demo repository: one task fixing add(), then the verdict complete."""
    return _goal_reply("goal_calc", [calc.FIX_PLAN], True, "add() adds and test_calc.py passes on main")


def goal_calc_pr_script() -> Script:
    """The pull-request scenario: the fix and a deploy.cfg task; the verdict leaves the blocked change to a person."""
    why = "the fix waits in a pull request; the deploy.cfg change was blocked by the secret scan and needs a person"
    return _goal_reply("goal_calc_pr", [calc.FIX_PLAN, calc.DEPLOY_PLAN], False, why)


SCRIPTS: dict[str, Callable[[], Script]] = {
    "hello_world": hello_world_script,
    "hermes": hermes_script,
    "qwen_xml": qwen_xml_script,
    "bare_json": bare_json_script,
    "think_call": think_call_script,
    "empty_reply": empty_reply_script,
    "repeated_call": repeated_call_script,
    "malformed_args": malformed_args_script,
    "http_500": http_500_script,
    "malformed_response": malformed_response_script,
    "slow": slow_script,
    "goal_demo": goal_demo_script,
    "calc_fix": calc_fix_script,
    "calc_secret": calc_secret_script,
    "goal_calc": goal_calc_script,
    "goal_calc_pr": goal_calc_pr_script,
}


def get_script(name: str) -> Script:
    """The ready-made script called ``name``; raises ``KeyError`` naming the known ones."""
    if name not in SCRIPTS:
        raise KeyError(f"unknown script {name!r}; known: {', '.join(SCRIPTS)}")
    return SCRIPTS[name]()


# --- the server side shared by both fakes -----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    """Decoded JSON body; the raw text if it was not JSON; ``None`` when empty."""


class _InLoopServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process hosting it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ScriptedServer:
    """Base of the fake model servers: serves ``build_app()`` in the running loop and picks scripted turns."""

    def __init__(self, script: Script | str = "hello_world") -> None:
        self.script = get_script(script) if isinstance(script, str) else script
        """Default script, used when a request carries no ``[[script:NAME]]`` marker."""
        self.requests: list[RecordedRequest] = []
        self._url: str | None = None
        self._failures_served: Counter[tuple[str, int]] = Counter()
        self._server: _InLoopServer | None = None
        self._task: asyncio.Task[None] | None = None

    def build_app(self) -> Starlette:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving on ``host:port`` (0 picks a free port) and return the base URL."""
        if self._task is not None:
            raise RuntimeError("server already started")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)  # bind here so a busy port raises OSError
        config = uvicorn.Config(
            self.build_app(), log_config=None, log_level="warning", access_log=False,
            lifespan="off", ws="none", timeout_graceful_shutdown=2,
        )  # fmt: skip
        self._server = _InLoopServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=f"{type(self).__name__}")
        while not self._server.started:
            if self._task.done():
                sock.close()
                self._task.result()
                raise RuntimeError("fake server stopped during start-up")
            await asyncio.sleep(0.005)
        bound_host, bound_port = self._server.servers[0].sockets[0].getsockname()[:2]
        netloc = f"[{bound_host}]" if family == socket.AF_INET6 else bound_host
        self._url = f"http://{netloc}:{bound_port}"
        return self._url

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43817``; raises ``RuntimeError`` before ``start()``."""
        if self._url is None:
            raise RuntimeError("server not started")
        return self._url

    async def stop(self) -> None:
        """Stop serving and wait for the server task to end."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._server = self._task = None

    async def __aenter__(self) -> Self:
        if self._task is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} url={self._url} script={self.script.name} requests={len(self.requests)}>"

    def bodies(self, path: str) -> list[Any]:
        """Bodies of the recorded requests to ``path``, oldest first."""
        return [r.body for r in self.requests if r.path == path]

    async def record(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.requests.append(RecordedRequest(request.method, request.url.path, dict(request.headers), body))
        return body

    def pick_turn(self, marker_texts: list[str], n_assistant: int, default: Script | None = None) -> Turn:
        """The turn to serve; ``marker_texts`` are the system prompt and first user message; ``default`` replaces
        the server's default script (a model of its own). Raises ``KeyError``."""
        name = next((m.group(1) for text in marker_texts if (m := MARKER.search(text))), None)
        script = (default or self.script) if name is None else get_script(name)
        turn = script.turn(n_assistant)
        if turn.failure in TRANSIENT_FAILURES:
            key = hashlib.sha256(json.dumps([script.name, marker_texts]).encode()).hexdigest()
            if self._failures_served[(key, n_assistant)] >= turn.failures:
                return turn.model_copy(update={"failure": None})
            self._failures_served[(key, n_assistant)] += 1
        return turn


def split_text(text: str, max_chars: int = 16) -> list[str]:
    """Split ``text`` into streaming deltas of at most ``max_chars``, at word boundaries where possible."""
    pieces: list[str] = []
    for word in re.findall(r"\s*\S+\s*|\s+", text):
        pieces.extend(word[i : i + max_chars] for i in range(0, len(word), max_chars))
    return pieces


async def serve_forever(server: ScriptedServer, host: str, port: int) -> None:
    """CLI helper: start ``server``, print its URL, serve until cancelled (Ctrl-C)."""
    url = await server.start(host, port)
    print(url, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
