"""Typed payloads inside frames (shared/payloads.py) and the protocol version check, as pure tables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import protocol as P
from shared.payloads import (
    CHECK_OUTPUT_CHARS,
    Check,
    RoutingDecision,
    TaskResult,
    VerificationReport,
    outcome_from_checks,
    version1_outcome,
)


def complete(**fields: Any) -> str:
    return json.dumps({"type": "task_complete", "task_id": "t", "generation": 1, **fields})


# --- versions ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", [
    {"type": "ping"},
    {"type": "ping", "protocol_version": 1},
    {"type": "task_complete", "task_id": "t", "generation": 1, "protocol_version": 1, "result": {"status": "success"}},
])  # fmt: skip
def test_version_1_frames_decode_with_or_without_a_version(frame: dict[str, Any]) -> None:
    """A frame saying version 1, or no version (the earliest sidecars), is accepted as version 1."""
    assert P.decode_sidecar(json.dumps(frame)).protocol_version == 1


@pytest.mark.parametrize(("version", "shown"), [(2, "2"), (0, "0"), (99, "99"), ("1.1", "'1.1'"), (True, "True"),
                                                (None, "None"), (10**30, None)])  # fmt: skip
@pytest.mark.parametrize("mtype", ["ping", "identify", "brand_new_type"])
def test_an_unknown_major_version_is_refused_naming_the_supported_ones(
    version: Any, shown: str | None, mtype: str
) -> None:
    """Any protocol_version but 1 (newer, older, or not an integer) is unsupported_protocol_version naming 1."""
    with pytest.raises(P.FrameError) as info:
        P.decode_sidecar(json.dumps({"type": mtype, "protocol_version": version, "agent_id": "a", "token": "t"}))
    reply = info.value.reply
    assert (reply.error, reply.supported_versions, reply.message_type) == ("unsupported_protocol_version", [1], mtype)
    assert reply.detail is not None and "this hub speaks 1" in reply.detail
    if shown is not None:
        assert f"protocol_version {shown} is not supported" in reply.detail


# --- outcomes ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("statuses", "outcome"), [
    ([], "unverified"),
    (["pass"], "verified"),
    (["pass", "pass"], "verified"),
    (["pass", "fail"], "partial_pass"),
    (["timeout", "pass", "error"], "partial_pass"),
    (["fail"], "failed"),
    (["error", "timeout"], "failed"),
])  # fmt: skip
def test_outcome_from_checks(statuses: list[str], outcome: str) -> None:
    """No check → unverified; all pass → verified; some → partial_pass; none → failed."""
    assert outcome_from_checks(statuses) == outcome


@pytest.mark.parametrize(("word", "outcome"), [
    ("verified", "verified"), ("pass", "verified"), ("PASSED", "verified"), ("partial_pass", "partial_pass"),
    ("failed", "failed"), ("fail", "failed"), ("error", "failed"), ("timeout", "failed"),
    ("execution_failed", "failed"), ("auto_pass", "unverified"), ("skip", "unverified"), ("skipped", "unverified"),
    ("unverified", "unverified"), ("what", None), (None, None),
])  # fmt: skip
def test_version1_words_map_onto_the_vocabulary(word: str | None, outcome: str | None) -> None:
    """Every word a version-1 sidecar used for verification maps onto the four outcomes."""
    assert version1_outcome(word) == outcome


def checks(*statuses: str) -> list[dict[str, str]]:
    return [{"type": "file_exists", "target": f"f{n}", "status": s} for n, s in enumerate(statuses)]


@pytest.mark.parametrize(("report", "claimed", "verdict"), [
    ({"outcome": "verified", "checks": checks("pass")}, "verified", "verified"),
    ({"outcome": "verified", "checks": []}, "verified", "unverified"),
    ({"outcome": "verified", "checks": checks("pass", "fail")}, "verified", "partial_pass"),
    ({"outcome": "partial_pass", "checks": []}, "partial_pass", "unverified"),
    ({"outcome": "unverified", "checks": checks("fail")}, "unverified", "failed"),
    ({"outcome": "failed", "checks": []}, "failed", "failed"),
    ({"status": "auto_pass", "checks": []}, "unverified", "unverified"),
    ({"status": "skip"}, "unverified", "unverified"),
    ({"status": "pass"}, "verified", "unverified"),
    ({"status": "timeout", "checks": []}, "failed", "failed"),
    ({"status": "pass", "checks": checks("pass", "pass")}, None, "verified"),
    ({"status": "fail", "checks": checks("pass", "fail")}, None, "partial_pass"),
    ({}, None, "unverified"),
])  # fmt: skip
def test_a_report_verdict_holds_its_claim_to_its_checks(
    report: dict[str, Any], claimed: str | None, verdict: str
) -> None:
    """A report's verdict is what its checks show; with none it is unverified unless the report says failed."""
    parsed = VerificationReport.model_validate(report)
    assert (parsed.claimed, parsed.verdict()) == (claimed, verdict)


def test_version1_checks_are_named_and_their_status_words_read() -> None:
    """A version-1 check gets a name from its description or type and target; status synonyms are read."""
    report = VerificationReport.model_validate({"checks": [
        {"type": "file_exists", "target": "a.txt", "status": "passed"},
        {"type": "git_clean", "target": "", "description": "tree is clean", "status": "FAILED"},
        {"type": "command_succeeds", "target": "make", "status": "timed_out"},
        {"type": "x", "status": "weird"},
        {"type": "x"},
    ]})  # fmt: skip
    assert [(c.name, c.status) for c in report.checks] == [
        ("file_exists a.txt", "pass"), ("tree is clean", "fail"), ("command_succeeds make", "timeout"),
        ("x", "error"), ("x", "error")]  # fmt: skip


def test_check_output_is_bounded_keeping_its_head_and_its_tail() -> None:
    """A check's output over the bound is cut in the middle: the first and the last lines stay."""
    output = "FIRST\n" + "x" * 50_000 + "\nLAST ERROR"
    check = Check.model_validate({"name": "c", "status": "fail", "output": output})
    assert len(check.output) <= CHECK_OUTPUT_CHARS + 40
    assert check.output.startswith("FIRST\n") and check.output.endswith("\nLAST ERROR") and "cut" in check.output
    assert Check.model_validate({"output": "short"}).output == "short"


# --- shapes --------------------------------------------------------------------------------------------------------


def test_typed_payloads_ignore_unknown_fields() -> None:
    """Unknown fields in a result, report, check or usage are ignored: newer sidecars keep working."""
    msg = P.decode_sidecar(complete(
        result={"status": "success", "outcome": "verified", "new_thing": {"a": [1]}},
        verification_report={"outcome": "verified", "checks": [{"name": "c", "status": "pass", "more": 1}], "x": 2},
        usage={"tokens_in": 3, "tokens_out": 4, "cache_hits": 9},
    ))  # fmt: skip
    assert isinstance(msg, P.TaskComplete)
    assert msg.result.model_dump(exclude_unset=True) == {"status": "success", "outcome": "verified"}
    assert msg.verification_report is not None and msg.verification_report.checks[0].status == "pass"
    assert msg.usage is not None and (msg.usage.tokens_total, msg.tokens_used) == (7, None)


@pytest.mark.parametrize(("frame", "field", "error"), [
    (complete(result={"status": "success", "note": float("nan")}), "result.note", "not_finite"),
    (complete(result={"output": "x", "deep": {"n": 1e400}}), "result.deep.n", "not_finite"),
    (complete(verification_report={"checks": [{"status": "pass", "extra": float("inf")}]}),
     "verification_report.checks.0.extra", "not_finite"),
    (complete(usage={"tokens_in": 1, "gpu": float("nan")}), "usage.gpu", "not_finite"),
    (complete(result={"status": "success", "big": 2**70}), "result.big", "out_of_range"),
])  # fmt: skip
def test_ignored_fields_still_keep_the_safe_json_limits(frame: str, field: str, error: str) -> None:
    """A typed payload is checked whole: a NaN or a huge number in a field it ignores is still refused, named."""
    with pytest.raises(P.FrameError) as info:
        P.decode_sidecar(frame)
    assert [(e["field"], e["error"]) for e in info.value.reply.errors or []] == [(field, error)]


@pytest.mark.parametrize(("result", "error"), [
    ({"outcome": "great"}, ("result.outcome", "invalid_value")),
    ({"exit_code": "1"}, ("result.exit_code", "wrong_type")),
    ({"parse_stats": {"m": {"native": -1}}}, ("result.parse_stats.m.native", "invalid_value")),
])  # fmt: skip
def test_known_fields_are_typed(result: dict[str, Any], error: tuple[str, str]) -> None:
    """A known field of the wrong type or value is a validation error naming it (never coerced)."""
    with pytest.raises(P.FrameError) as info:
        P.decode_sidecar(complete(result=result))
    assert [(e["field"], e["error"]) for e in info.value.reply.errors or []] == [error]


def test_version1_usage_in_the_result_is_read_as_usage() -> None:
    """A version-1 result carrying tokens, model and cost gives the frame a usage (not kept in the result); a usage
    sent wins."""
    legacy = {"status": "success", "tokens_in": 10, "tokens_out": 5, "model_used": "qwen", "provider": "ollama",
              "cost_usd": 0, "equivalent_claude_cost_usd": 0.01}  # fmt: skip
    msg = P.decode_sidecar(complete(result=legacy))
    assert isinstance(msg, P.TaskComplete) and msg.usage is None and msg.reported_usage is not None
    assert msg.reported_usage.model_dump(exclude_none=True) == {
        "tokens_in": 10, "tokens_out": 5, "model": "qwen", "provider": "ollama", "cost_usd": 0.0,
        "equivalent_cost_usd": 0.01}  # fmt: skip
    assert msg.result.model_dump(exclude_unset=True) == {"status": "success"}
    msg = P.decode_sidecar(complete(result=legacy, usage={"tokens_in": 1}))
    assert isinstance(msg, P.TaskComplete) and msg.reported_usage is not None and msg.reported_usage.tokens_total == 1
    plain = P.decode_sidecar(complete(result={"status": "success"}))
    assert isinstance(plain, P.TaskComplete) and plain.reported_usage is None
    failed = P.decode_sidecar(json.dumps({"type": "task_failed", "task_id": "t", "generation": 1}))
    assert isinstance(failed, P.TaskFailed) and failed.reported_usage is None


def test_result_failed_reads_every_version1_failure_word() -> None:
    """A result's own status decides whether the run failed: failed, failure, error, timeout, any case."""
    assert [TaskResult(status=s).failed for s in ("success", "failed", "FAILURE", "error", "timeout")] == [
        False,
        True,
        True,
        True,
        True,
    ]


def test_routing_decision_keeps_its_version1_names_on_the_wire() -> None:
    """The hub's routing decision travels as target_type/selected_model/...; both names read back."""
    decision = RoutingDecision(
        target="ollama",
        provider="ollama",
        model="qwen3:8b",
        endpoint="http://gpu:11434",
        reason="tier standard",
        tier="standard",
        decided_at=5,
    )
    wire = decision.stored()
    assert wire == {
        "target_type": "ollama",
        "provider": "ollama",
        "selected_model": "qwen3:8b",
        "selected_endpoint": "http://gpu:11434",
        "classification_reason": "tier standard",
        "effective_tier": "standard",
        "decided_at": 5,
    }
    assign = P.TaskAssign(task_id="t", description="d", generation=1, assigned_at=2, routing_decision=wire)
    back = P.decode_hub(P.encode(assign))
    assert isinstance(back, P.TaskAssign) and back.routing_decision == decision
    assert json.loads(P.encode(assign))["routing_decision"] == wire
    assert RoutingDecision.model_validate({"target": "shell", "ignored": 1}).target == "shell"
