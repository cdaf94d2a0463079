"""Hostile JSON from agents: reports and identify frames with values the hub could not store or show are refused
naming the field and counted as violations, and a non-finite resource never reaches an API answer or the
dashboard; each test gets its own hub.
"""

from __future__ import annotations

import asyncio
import math

import websockets

from hub.agents import Agent, finite_resources
from shared.agent_sim import AgentSim
from tests.conftest import SCALE, wait_tasks
from tests.hub.hostile_json_hub import DEEP, nested, serves_a_task, strict_json

REPORTS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "lone surrogate in a result value",
        r'{"type":"task_complete","task_id":"$T","generation":$G,'
        r'"result":{"status":"success","out":"\ud800"}}',
        [("result.out", "invalid_unicode")],
    ),
    (
        "lone surrogate in a result key",
        r'{"type":"task_complete","task_id":"$T","generation":$G,'
        r'"result":{"\ud800":1}}',
        [("result.\\ud800", "invalid_unicode")],
    ),
    (
        "lone surrogate in the error text",
        r'{"type":"task_failed","task_id":"$T","generation":$G,'
        r'"error":"bad \udfff"}',
        [("error", "invalid_unicode")],
    ),
    (
        "NaN in the verification report",
        '{"type":"task_complete","task_id":"$T","generation":$G,"verification_report":{"status":"pass","score":NaN}}',
        [("verification_report.score", "not_finite")],
    ),
    (
        "Infinity in the verification history",
        '{"type":"task_complete","task_id":"$T","generation":$G,"verification_history":[{"ms":Infinity}]}',
        [("verification_history.0.ms", "not_finite")],
    ),
    (
        "1e400 in a failure result",
        '{"type":"task_failed","task_id":"$T","generation":$G,"result":{"x":1e400}}',
        [("result.x", "not_finite")],
    ),
    (
        "5,000-digit integer in a result",
        '{"type":"task_complete","task_id":"$T","generation":$G,"result":{"n":' + "9" * 5000 + "}}",
        [("result.n", "out_of_range")],
    ),
    (
        "result 100,000 levels deep",
        '{"type":"task_complete","task_id":"$T","generation":$G,"result":{"x":' + nested(DEEP) + "}}",
        [("(body)", "too_deep")],
    ),
    (
        "tokens_used past 64 bits",
        '{"type":"task_complete","task_id":"$T","generation":$G,"tokens_used":' + "9" * 30 + "}",
        [("tokens_used", "invalid_value")],
    ),
    (
        "lone surrogate in an execution event",
        r'{"type":"task_progress","task_id":"$T","generation":$G,'
        r'"execution_event":{"event_type":"tool_call","text":"\ud83d"}}',
        [("execution_event.text", "invalid_unicode")],
    ),
    (
        "NaN in an execution event",
        '{"type":"task_progress","task_id":"$T","generation":$G,"execution_event":{"event_type":"tokens","n":NaN}}',
        [("execution_event.n", "not_finite")],
    ),
    (
        "generation past 64 bits",
        '{"type":"task_accepted","task_id":"$T","generation":' + "9" * 40 + "}",
        [("generation", "invalid_value")],
    ),
    (
        "NaN cpu_percent",
        '{"type":"resource_report","cpu_percent":NaN}',
        [("cpu_percent", "invalid_value"), ("cpu_percent", "wrong_type")],
    ),
]


async def test_hostile_reports_are_refused_and_never_reach_the_task(make_hub) -> None:
    """Hostile reports about a held task are each a validation_failed error naming the field and counted as a
    violation; the task stays as it was, and a clean report afterwards completes it."""
    handle = await make_hub(violation_limit=100)
    sim = AgentSim(handle.ws_url, "holder", await handle.mint_token("holder"), behaviour="ignore")
    await sim.connect()
    try:
        tid = await handle.submit(description="hold me", assign_to="holder")
        assign = await sim.wait_for(lambda m: m.get("type") == "task_assign")
        gen = assign["generation"]
        await sim.send({"type": "task_accepted", "task_id": tid, "generation": gen})
        await sim.wait_for(lambda m: m.get("type") == "task_ack")
        for case, frame, errors in REPORTS:
            before, seen = handle.hub.violations.n_violations, len(sim.errors)
            await sim.send_raw(frame.replace("$T", tid).replace("$G", str(gen)))
            reply = await sim.wait_for(lambda m, n=seen: m.get("type") == "error" and m in sim.errors[n:])
            assert reply["error"] == "validation_failed", case
            assert [(e["field"], e["error"]) for e in reply["errors"]] == errors, case
            assert handle.hub.violations.n_violations == before + 1, case
        task = await handle.task(tid)
        assert (task["status"], task["result"], task["verification_report"]) == ("working", None, None)
        r = await handle.http.get(f"/api/tasks/{tid}/trajectory")
        assert r.status_code == 200 and r.json()["count"] == 0
        await sim.send(
            {
                "type": "task_complete",
                "task_id": tid,
                "generation": gen,
                "result": {"status": "success", "output": "nul \x00 kept", "pi": 3.14},
            }
        )
        await wait_tasks(handle, [tid], {"completed"})
        assert strict_json((await handle.http.get(f"/api/tasks/{tid}")).content)["result"]["output"] == "nul \x00 kept"
    finally:
        await sim.close()
    await serves_a_task(handle)


async def test_hostile_identify_is_refused_and_a_clean_one_then_works(hub) -> None:
    """Before identify, hostile identifiers or pm2_info are validation_failed violations; the socket stays usable."""
    token = await hub.mint_token("ident")
    sim = AgentSim(hub.ws_url, "ident", token)
    await sim.connect(identify=False)
    try:
        frames = [
            ('{"type":"identify","agent_id":"ident\\u0000","token":"' + token + '"}', "agent_id", "invalid_characters"),
            (r'{"type":"identify","agent_id":"id\ud800","token":"' + token + '"}', "agent_id", "invalid_unicode"),
            (
                '{"type":"identify","agent_id":"ident","token":"' + token + '","pm2_info":{"mem":1e400}}',
                "pm2_info.mem",
                "not_finite",
            ),
            (
                '{"type":"identify","agent_id":"ident","token":"' + token + '","name":"x\\u001b]0;pwn\\u0007"}',
                "name",
                "invalid_characters",
            ),
        ]
        for frame, field, code in frames:
            before, seen = hub.hub.violations.n_violations, len(sim.errors)
            await sim.send_raw(frame)
            reply = await sim.wait_for(lambda m, n=seen: m.get("type") == "error" and m in sim.errors[n:])
            assert [(e["field"], e["error"]) for e in reply["errors"]] == [(field, code)]
            assert hub.hub.violations.n_violations == before + 1
        assert hub.hub.agents.get("ident") is None
        await sim.send({"type": "identify", "agent_id": "ident", "token": token})
        await asyncio.wait_for(sim.identified.wait(), 10 * SCALE)
    finally:
        await sim.close()


async def test_resources_are_shown_finite_even_if_a_bad_value_slipped_in(hub, make_agent) -> None:
    """A NaN resource report is refused; a non-finite value already in an agent's resources never reaches the
    API, the dashboard state or the dashboard snapshot (all of which a browser must be able to parse)."""
    sim = await make_agent()
    await sim.send({"type": "resource_report", "cpu_percent": 12.5, "ram_used_bytes": 100})
    await sim.send_raw('{"type":"resource_report","cpu_percent":NaN}')
    await sim.wait_for(lambda m: m.get("type") == "error")
    await sim.send({"type": "ping"})
    await sim.wait_for(lambda m: m.get("type") == "pong")
    agent = hub.hub.agents.get(sim.agent_id)
    assert agent is not None and agent.resources["cpu_percent"] == 12.5
    agent.resources.update(cpu_percent=math.nan, vram_used_bytes=math.inf, ram_total_bytes=-1.0)  # slipped in
    shown = strict_json((await hub.http.get(f"/api/agents/{sim.agent_id}")).content)["resources"]
    assert shown == {"ram_used_bytes": 100, "reported_at": agent.resources["reported_at"]}
    viewer = await hub.mint_token("screen", role="viewer")
    r = await hub.http.get("/api/dashboard/state", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 200
    strict_json(r.content)
    async with websockets.connect(hub.ws_url + f"/dashboard?token={viewer}") as ws:
        async with asyncio.timeout(10 * SCALE):
            while (msg := strict_json(await ws.recv()))["type"] != "snapshot":
                pass
    assert msg["type"] == "snapshot"


def test_finite_resources_keeps_only_finite_non_negative_numbers() -> None:
    """finite_resources drops NaN, infinities and negative numbers and keeps everything else."""
    report = {
        "cpu_percent": math.nan,
        "ram_used_bytes": 5,
        "vram_used_bytes": math.inf,
        "x": -1,
        "ok": 0.5,
        "reported_at": 1,
        "note": "s",
        "none": None,
        "flag": True,
    }
    assert finite_resources(report) == {
        "ram_used_bytes": 5,
        "ok": 0.5,
        "reported_at": 1,
        "note": "s",
        "none": None,
        "flag": True,
    }
    assert Agent("a", 0, resources={"cpu_percent": math.nan}).view()["resources"] == {}
