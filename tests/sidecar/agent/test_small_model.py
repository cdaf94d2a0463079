"""The loop for small local models, against the fake Ollama/OpenAI servers with the real tools, sandbox and checks:
the finish tool, the nudge for a reply without a call, unknown tools, compact tool descriptions, prefix stability."""

from __future__ import annotations

from typing import Any

from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.openai_server import FakeOpenAIServer
from shared.fakes.script import HELLO_CALLS, Script, ScriptedCall, Turn
from sidecar.agent.agentic import OpenAIExecutor
from sidecar.agent.loop import Guardrails, ReactLoop, TerminationReason
from sidecar.agent.nudges import FINISH, FINISH_TEXT
from sidecar.agent.openai_compat import OpenAIChatModel
from sidecar.agent.parser import ParseStats
from sidecar.agent.tools import ToolRegistry
from sidecar.agent.trajectory import Trajectory
from tests.sidecar.agent.test_agentic import make_task, make_workspace, ollama_executor, servers  # noqa: F401
from tests.sidecar.agent.test_loop import MODEL, TASK, RecordingSink, fake_ollama, make_run, sandbox, workspace  # noqa: F401

PROSE = 'Here is the solution:\n\n```python\nprint("hello")\n```\n\nSave it as hello.py and run it.'
FINISHED = "Wrote hello.py and test_hello.py; python3 test_hello.py passes."


def call(name: str, **arguments: Any) -> Turn:
    return Turn(tool_calls=[ScriptedCall(name=name, arguments=arguments)])


def finish(summary: str = FINISHED) -> Turn:
    return call(FINISH, summary=summary)


HELLO_TURNS = [Turn(tool_calls=[c]) for c in HELLO_CALLS]


def user_texts(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


async def test_prose_with_fenced_code_gets_a_nudge_then_the_real_call_is_verified(servers, sandbox, make_workspace):  # noqa: F811
    """A Markdown reply with code and no call is not the end: the model is told to call write_file, does, and the
    task is verified; the nudge is counted as a no_call format error."""
    script = Script(name="prose", turns=[Turn(content=PROSE), *HELLO_TURNS, finish()])
    server = await servers(FakeOllamaServer, script)
    ws = make_workspace()
    outcome = await ollama_executor(server, sandbox).run(make_task(), ws, RecordingSink())
    assert outcome.details["outcome"] == "verified" and outcome.details["termination_reason"] == "completed"
    nudge = user_texts(server.bodies("/api/chat")[1])[-1]
    assert "did not call a tool" in nudge and "write_file" in nudge and "finish" in nudge
    stats = outcome.details["parse_stats"][MODEL]
    assert stats["format_error.no_call"] == 1 and stats["native"] == 4
    assert outcome.output == FINISHED and (ws / "hello.py").is_file()


async def test_a_model_that_never_calls_fails_with_format_errors_never_completed(servers, sandbox, make_workspace):  # noqa: F811
    """Prose forever: three nudges, then the attempt ends with format_errors and the task fails; nothing says
    completed."""
    script = Script(name="mute", turns=[Turn(content=PROSE)] * 8, final_answer=PROSE)
    server = await servers(FakeOllamaServer, script)
    outcome = await ollama_executor(server, sandbox).run(make_task(), make_workspace(), RecordingSink())
    assert outcome.status == "failed" and outcome.reason == "format_errors"
    assert outcome.details["termination_reason"] == "format_errors" and outcome.details["outcome"] == "failed"
    assert len(server.bodies("/api/chat")) == 3


async def test_plain_text_before_any_action_is_nudged_not_completed(fake_ollama, make_run) -> None:  # noqa: F811
    """A text reply before the model did anything is not a final answer: it gets the no-call nudge (and a finish
    with nothing done is refused once; the second stands)."""
    turns = [Turn(content="I will do it."), finish("nothing"), finish("nothing")]
    run = make_run(await fake_ollama(Script(name="talk", turns=turns)))
    result = await run.run()
    assert result.termination_reason is TerminationReason.COMPLETED and result.final_answer == "nothing"
    nudge = user_texts(run.chat_bodies()[1])[-1]
    assert nudge.startswith("Your reply has no tool call") and "finish" in nudge


async def test_a_finish_with_nothing_done_is_refused_once_per_attempt(fake_ollama, make_run, workspace) -> None:  # noqa: F811
    """A model that answers a task with finish alone (as a 1.5B model does, and again after the checks failed) is told
    nothing was changed or run yet; after it does the work, finish ends it."""
    script = Script(name="lazy", turns=[finish("fixed it"), *HELLO_TURNS, finish()])
    run = make_run(await fake_ollama(script))
    result = await run.run()
    assert result.termination_reason is TerminationReason.COMPLETED and (workspace / "hello.py").is_file()
    refused = [m for m in run.trajectory.messages if m.get("name") == FINISH and m.get("is_error")]
    assert len(refused) == 1 and "nothing was changed or run yet" in refused[0]["content"]
    assert len(run.chat_bodies()) == 2 + len(HELLO_TURNS)


async def test_unknown_tool_is_answered_with_the_list_of_real_tools(fake_ollama, make_run) -> None:  # noqa: F811
    """A call of an invented tool (named after a check type) gets the names of the real tools, finish included."""
    script = Script(name="invent", turns=[call("test_passes", target="python3 test_hello.py"), *HELLO_TURNS])
    run = make_run(await fake_ollama(script))
    await run.run()
    answer = run.chat_bodies()[1]["messages"][-1]
    assert answer["role"] == "tool" and "There is no tool named 'test_passes'" in answer["content"]
    for name in ("write_file", "run_command", "finish"):
        assert name in answer["content"]


async def test_finish_ends_the_loop_with_its_summary(fake_ollama, make_run, workspace) -> None:  # noqa: F811
    """finish ends the attempt at once (later turns are never asked for), its summary is the final answer, and its
    call gets a tool result so the conversation stays valid for a verification retry."""
    script = Script(name="fin", turns=[HELLO_TURNS[0], finish(), call("list_directory", path=".")])
    run = make_run(await fake_ollama(script))
    result = await run.run()
    assert result.termination_reason is TerminationReason.COMPLETED and result.final_answer == FINISHED
    assert len(run.chat_bodies()) == 2 and (workspace / "hello.py").is_file()
    last = run.trajectory.messages[-1]
    assert (last["role"], last["name"], last["content"]) == ("tool", FINISH, FINISH_TEXT)


async def test_finish_with_failing_checks_reports_verification_failed(servers, sandbox, make_workspace):  # noqa: F811
    """The model finishes without the files the check needs: the task fails and its termination reason is
    verification_failed, never completed."""
    server = await servers(FakeOllamaServer, Script(name="lazy", turns=[HELLO_TURNS[0], finish("all done")]))
    outcome = await ollama_executor(server, sandbox).run(make_task(), make_workspace(), RecordingSink())
    assert outcome.status == "failed" and outcome.details["outcome"] == "failed"
    assert outcome.details["termination_reason"] == "verification_failed"


async def test_small_context_gets_compact_tool_descriptions(fake_ollama, make_run) -> None:  # noqa: F811
    """With a window of 16k tokens or less the tools are described by their first sentence only; finish is last."""
    server = await fake_ollama("hello_world")
    big = make_run(server)
    await big.run()
    full = {t["function"]["name"]: t["function"]["description"] for t in big.chat_bodies()[0]["tools"]}
    small, sent = make_run(server, num_ctx=8192), len(big.chat_bodies())
    small.loop = ReactLoop(small.model, small.loop.tools, small.events, small.trajectory, small.stats, compact=True)
    await small.run()
    tools = small.chat_bodies()[sent]["tools"]
    short = {t["function"]["name"]: t["function"]["description"] for t in tools}
    assert tools[-1]["function"]["name"] == FINISH
    assert len(short["edit_file"]) < len(full["edit_file"]) and full["edit_file"].startswith(short["edit_file"][:-1])


async def test_each_request_starts_with_the_whole_previous_request(sandbox, workspace) -> None:  # noqa: F811
    """Prefix stability: the messages of step N+1 begin with every message of step N and its reply, unchanged, so
    the server re-evaluates only the newest messages; the re-evaluated tokens are summed from its timings."""
    async with FakeOpenAIServer(Script(name="hello", turns=[*HELLO_TURNS, finish()]), model=MODEL) as server:
        model = OpenAIChatModel(server.url, MODEL, context_length=8192, retry_delay_s=0.01)
        trajectory = Trajectory(workspace, task_id="t", provider="openai", model=MODEL, tools=[])
        trajectory.messages.append({"role": "system", "content": "You are a coding agent."})
        loop = ReactLoop(model, ToolRegistry(workspace, sandbox), RecordingSink(), trajectory, ParseStats())
        result = await loop.run(TASK, Guardrails())
        await model.aclose()
    assert result.termination_reason is TerminationReason.COMPLETED
    bodies = server.bodies("/v1/chat/completions")
    assert len(bodies) == 4
    for before, after in zip(bodies, bodies[1:], strict=False):
        n = len(before["messages"])
        assert after["messages"][:n] == before["messages"] and after["messages"][n]["role"] == "assistant"
        assert after["tools"] == before["tools"]
    assert loop.tokens_reevaluated == sum(server.reevaluated)
    full = [len(str(b)) // 4 for b in bodies]
    assert all(evaluated < size / 2 for evaluated, size in zip(server.reevaluated[1:], full[1:], strict=True))
    steps = [s for s in trajectory.steps if s["kind"] == "model_turn"]
    assert [s["tokens_reevaluated"] for s in steps] == server.reevaluated


async def test_openai_executor_reports_reevaluated_tokens_and_finishes(sandbox, make_workspace) -> None:  # noqa: F811
    """The openai executor runs the hello task to verified; the result carries prompt_tokens_reevaluated; its 8k
    window gets the compact tool descriptions and the system prompt shows an example call."""
    async with FakeOpenAIServer(Script(name="hello", turns=[*HELLO_TURNS, finish()]), model=MODEL) as server:
        executor = OpenAIExecutor(sandbox, base_url=server.url, default_model=MODEL, retry_delay_s=0.01)
        outcome = await executor.run(make_task(), make_workspace(), RecordingSink())
    details = outcome.details
    assert details["outcome"] == "verified" and details["usage"].provider == "openai"
    assert details["prompt_tokens_reevaluated"] == sum(server.reevaluated) > 0
    first = server.bodies("/v1/chat/completions")[0]
    edit = next(t["function"] for t in first["tools"] if t["function"]["name"] == "edit_file")
    assert edit["description"] == "Replace one exact span of text in a file."
    system = first["messages"][0]["content"]
    assert "<tool_call>" in system and '"name": "finish"' in system  # the few-shot example


def test_a_broken_call_beside_a_valid_one_is_a_format_error_not_half_a_plan() -> None:
    """As the 1.5B model wrote it: a write_file call with a Python triple-quoted string (not JSON) and then a
    run_command to test it; nothing runs, and the message names the triple quotes."""
    from sidecar.agent.parser import parse_reply

    reply = (
        'Implement:\n```json\n{\n  "name": "write_file",\n  "arguments": {\n    "path": "fizzbuzz.py",\n'
        '    "content": """\ndef fizzbuzz(n):\n    return []\n"""\n  }\n}\n```\n\nVerify:\n```json\n'
        '{"name": "run_command", "arguments": {"command": "python3 -c \\"import fizzbuzz\\""}}\n```'
    )
    parsed = parse_reply(reply, None, ["write_file", "run_command"])
    assert parsed.calls == () and parsed.error is not None
    assert parsed.error.reason == "malformed_json" and "triple-quoted" in parsed.error.message


async def test_fenced_code_beside_a_call_that_saves_nothing_gets_a_note(fake_ollama, make_run, workspace) -> None:  # noqa: F811
    """Code shown in a ```python block next to a run_command (as the 1.5B model did) is pointed out as not saved;
    beside a write_file call it is not."""
    shown = Turn(content="```python\ndef reverse_words(s):\n    return s\n```", tool_calls=[HELLO_CALLS[2]])
    written = Turn(content="```python\nprint('hello')\n```", tool_calls=[HELLO_CALLS[0]])
    run = make_run(await fake_ollama(Script(name="shown", turns=[shown, written, finish()])))
    await run.run()
    second, third = run.chat_bodies()[1]["messages"], run.chat_bodies()[2]["messages"]
    assert second[-1]["role"] == "user" and "NOT saved" in second[-1]["content"]
    assert third[-1]["role"] == "tool" and (workspace / "hello.py").is_file()


async def test_finish_after_a_failed_call_is_refused(fake_ollama, make_run, workspace) -> None:  # noqa: F811
    """A reply that runs a failing command and finishes in one go is not the end: finish is refused with the reason,
    the model sees the failure, and a later finish on its own ends the work."""
    failing_then_finish = Turn(
        tool_calls=[
            ScriptedCall(name="run_command", arguments={"command": "exit 3"}),
            ScriptedCall(name="finish", arguments={"summary": "done"}),
        ]  # fmt: skip
    )
    script = Script(name="hasty", turns=[failing_then_finish, *HELLO_TURNS, finish()])
    run = make_run(await fake_ollama(script))
    result = await run.run()
    assert result.termination_reason is TerminationReason.COMPLETED and (workspace / "hello.py").is_file()
    refused = [m for m in run.trajectory.messages if m.get("name") == FINISH and m.get("is_error")]
    assert len(refused) == 1 and "run_command failed earlier in this same reply" in refused[0]["content"]
    assert len(run.chat_bodies()) == 2 + len(HELLO_TURNS)
