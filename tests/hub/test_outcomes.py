"""One outcome vocabulary end to end: what a raw agent reports is recorded once and shown the same in the API, the
dashboard and the log; frames of an unknown protocol version are refused."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import websockets

from shared.agent_sim import AgentSim
from tests.conftest import HubHandle


def is_type(kind: str, **fields: Any):
    return lambda m: m.get("type") == kind and all(m.get(k) == v for k, v in fields.items())


PASS = {"name": "file_exists out.txt", "status": "pass", "output": "out.txt exists"}
FAIL = {"name": "command_succeeds make test", "status": "fail", "output": "1 failed"}
USAGE = {
    "tokens_in": 120,
    "tokens_out": 30,
    "model": "qwen3:8b",
    "provider": "ollama",
    "cost_usd": 0.0,
    "equivalent_cost_usd": 0.0008,
}

# (case, result, verification report, outcome recorded, task status)
CASES: list[tuple[str, dict[str, Any], dict[str, Any] | None, str, str]] = [
    (
        "verified",
        {"status": "success", "outcome": "verified"},
        {"outcome": "verified", "checks": [PASS, PASS]},
        "verified",
        "completed",
    ),
    (
        "partial_pass",
        {"status": "success", "outcome": "partial_pass"},
        {"outcome": "partial_pass", "checks": [PASS, FAIL]},
        "partial_pass",
        "completed",
    ),
    (
        "unverified",
        {"status": "success", "outcome": "unverified"},
        {"outcome": "unverified", "checks": []},
        "unverified",
        "completed",
    ),
    (
        "unverified, skipped",
        {"status": "success", "outcome": "unverified"},
        {"outcome": "unverified", "checks": [], "skipped": True},
        "unverified",
        "completed",
    ),
    (
        "failed",
        {"status": "success", "outcome": "failed"},
        {"outcome": "failed", "checks": [FAIL]},
        "failed",
        "dead_letter",
    ),
    (
        "verified claimed with no check",
        {"status": "success", "outcome": "verified"},
        {"outcome": "verified", "checks": []},
        "unverified",
        "completed",
    ),
    (
        "verified claimed over a failing check",
        {"status": "success", "outcome": "verified"},
        {"outcome": "verified", "checks": [PASS, FAIL]},
        "partial_pass",
        "completed",
    ),
    (
        "version 1: no steps (auto_pass)",
        {"status": "success", "verification_status": "verified"},
        {"status": "auto_pass", "checks": []},
        "unverified",
        "completed",
    ),
    (
        "version 1: skip",
        {"status": "success", "verification_status": "verified"},
        {"status": "skip", "checks": []},
        "unverified",
        "completed",
    ),
    ("version 1: no report", {"status": "success"}, None, "unverified", "completed"),
]


async def dashboard_view(hub: HubHandle, tid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The task as the dashboard shows it: its row in the snapshot, and its detail view."""
    r = await hub.http.get("/api/dashboard/state")
    assert r.status_code == 200
    snap = r.json()
    rows = [t for key in ("recent_tasks", "dead_letter_tasks") for t in snap.get(key, []) if t["id"] == tid]
    assert rows, snap.keys()
    async with websockets.connect(f"{hub.ws_url}/dashboard?token={hub.admin_token}") as ws:
        await ws.send(json.dumps({"type": "subscribe_task", "task_id": tid}))
        while (msg := json.loads(await ws.recv()))["type"] != "task_detail":
            pass
    return rows[0], msg["data"]["task"]


@pytest.mark.parametrize(("case", "result", "report", "outcome", "status"), CASES, ids=[c[0] for c in CASES])
async def test_an_outcome_is_recorded_once_and_shown_the_same_everywhere(
    hub: HubHandle,
    make_agent,
    caplog: pytest.LogCaptureFixture,
    case: str,
    result: dict[str, Any],
    report: dict[str, Any] | None,
    outcome: str,
    status: str,
) -> None:
    """The outcome a raw agent reports (held to its checks) is the one in GET /api/tasks/{id}, the stats, the
    dashboard's row and detail, and the hub's log line; a failed one dead-letters as verification_failed."""
    caplog.set_level(logging.INFO, logger="hub.queue")
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description=case, max_retries=1)
    assign = await sim.wait_for(is_type("task_assign"))
    frame: dict[str, Any] = {
        "type": "task_complete",
        "task_id": tid,
        "generation": assign["generation"],
        "result": result,
        "usage": USAGE,
    }
    if report is not None:
        frame["verification_report"] = report
    await sim.send(frame)
    ack = await sim.wait_for(is_type("task_ack", task_id=tid))
    assert ack["status"] == ("complete" if status == "completed" else "dead_letter")

    task = await hub.task(tid)
    assert task["status"] == status and task["result"] == result and sim.errors == []
    assert (task["usage"], task["tokens_used"]) == (USAGE, 150 if status == "completed" else None)
    if report is not None:
        assert task["verification_report"]["outcome"] == outcome
    if status == "completed":
        assert task["outcome"] == outcome
        assert (await hub.http.get("/api/tasks/stats")).json()["by_outcome"] == {outcome: 1}
    else:
        assert (task["outcome"], task["dead_letter_reason"]) == (None, "verification_failed")

    row, detail = await dashboard_view(hub, tid)
    assert row["outcome"] == detail["outcome"] == task["outcome"]
    assert detail["verification_status"] == (outcome if report is not None else None)

    lines = [r.getMessage() for r in caplog.records if r.name == "hub.queue" and f"task {tid} " in r.getMessage()]
    assert len(lines) == 1, lines
    ending = "completed" if status == "completed" else "dead_letter"
    assert lines[0].startswith(f"task {tid} {ending} outcome={outcome} "), lines
    assert status == "completed" or " reason=verification_failed " in lines[0]


async def test_a_claim_the_checks_do_not_bear_out_is_logged(
    hub: HubHandle, make_agent, caplog: pytest.LogCaptureFixture
) -> None:
    """A verified claim over no check is recorded as unverified, with a warning naming both."""
    caplog.set_level(logging.INFO, logger="hub.queue")
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="overclaims")
    assign = await sim.wait_for(is_type("task_assign"))
    await sim.send(
        {
            "type": "task_complete",
            "task_id": tid,
            "generation": assign["generation"],
            "result": {"status": "success", "outcome": "verified"},
        }
    )
    await sim.wait_for(is_type("task_ack", task_id=tid))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and tid in r.getMessage()]
    assert warnings == [f"task {tid}: reported outcome verified does not match its checks; recording unverified"]


async def test_usage_alone_fills_tokens_used(hub: HubHandle, make_agent) -> None:
    """A task_complete with a usage and no tokens_used records tokens in + out as tokens_used."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="counts")
    assign = await sim.wait_for(is_type("task_assign"))
    await sim.send(
        {
            "type": "task_complete",
            "task_id": tid,
            "generation": assign["generation"],
            "result": {"status": "success", "outcome": "unverified"},
            "usage": USAGE,
        }
    )
    await sim.wait_for(is_type("task_ack", task_id=tid))
    task = await hub.task(tid)
    assert (task["tokens_used"], task["usage"]["model"]) == (150, "qwen3:8b")


async def test_task_failed_keeps_its_usage_and_report(hub: HubHandle, make_agent) -> None:
    """task_failed may carry a usage and a verification report: both are kept on the dead-lettered task."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="crashes", max_retries=1)
    assign = await sim.wait_for(is_type("task_assign"))
    await sim.send(
        {
            "type": "task_failed",
            "task_id": tid,
            "generation": assign["generation"],
            "error": "crashed",
            "reason": "sidecar_error",
            "usage": USAGE,
            "verification_report": {"checks": [FAIL]},
        }
    )
    assert (await sim.wait_for(is_type("task_ack", task_id=tid)))["status"] == "dead_letter"
    task = await hub.task(tid)
    assert (task["dead_letter_reason"], task["usage"], task["verification_report"]["outcome"]) == (
        "agent_error",
        USAGE,
        "failed",
    )


async def test_routing_decision_is_typed_and_keeps_its_version1_names(hub: HubHandle, make_agent) -> None:
    """task_assign carries the routing decision under its version-1 names, with the provider added."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="route me", metadata={"model": "qwen3:8b"}, executor="ollama")
    decision = (await sim.wait_for(is_type("task_assign")))["routing_decision"]
    assert {k: decision[k] for k in ("target_type", "provider", "selected_model")} == {
        "target_type": "ollama",
        "provider": "ollama",
        "selected_model": "qwen3:8b",
    }
    assert (await hub.task(tid))["routing_decision"] == decision


# --- protocol versions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 0, "2.0"])
async def test_an_agent_of_an_unknown_major_version_is_told_and_closed(hub: HubHandle, version: Any) -> None:
    """identify with protocol_version 2 (or 0, or "2.0") gets unsupported_protocol_version naming 1, then close
    4426; it is not counted as a validation violation."""
    token = await hub.mint_token("future")
    async with websockets.connect(hub.ws_url) as ws:
        await ws.send(
            json.dumps({"type": "identify", "agent_id": "future", "token": token, "protocol_version": version})
        )
        reply = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert (reply["type"], reply["error"]) == ("error", "unsupported_protocol_version")
    assert reply["supported_versions"] == [1]
    assert reply["message_type"] == "identify" and "this hub speaks 1" in reply["detail"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4426
    assert hub.hub.violations.n_violations == 0 and hub.hub.agents.get("future") is None


async def test_version_1_frames_with_or_without_the_field_still_work(hub: HubHandle) -> None:
    """A sidecar that never sends protocol_version (the earliest ones) identifies and completes work as before."""
    token = await hub.mint_token("old")
    sim = AgentSim(hub.ws_url, "old", token, behaviour="ignore")
    await sim.connect(identify=False)
    try:
        await sim.send_raw(json.dumps({"type": "identify", "agent_id": "old", "token": token}))
        await sim.wait_for(is_type("identified"))
        tid = await hub.submit(description="old style")
        assign = await sim.wait_for(is_type("task_assign"))
        await sim.send_raw(
            json.dumps(
                {
                    "type": "task_complete",
                    "task_id": tid,
                    "generation": assign["generation"],
                    "result": {"status": "success", "output": "ok", "tokens_in": 5, "tokens_out": 2, "model_used": "m"},
                }
            )
        )
        assert (await sim.wait_for(is_type("task_ack", task_id=tid)))["status"] == "complete"
        task = await hub.task(tid)
        assert (task["outcome"], task["usage"], task["tokens_used"]) == (
            "unverified",
            {"tokens_in": 5, "tokens_out": 2, "model": "m"},
            7,
        )
        assert sim.errors == []
    finally:
        await sim.close()
