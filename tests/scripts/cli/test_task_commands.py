"""``agentcom task|agents|goal|hub VERB`` against a real hub: run as the user runs them (a separate process), the hub
and token found from flags, the environment, a client config or the local hub's data dir."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from shared.agent_sim import AgentSim
from tests.conftest import HubHandle

ROOT = Path(__file__).resolve().parents[3]


async def agentcom(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``agentcom ARGS`` in a fresh interpreter; its exit code, stdout and stderr."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
    base["AGENTCOM_CLIENT_CONFIG"] = str(ROOT / "does-not-exist.toml")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scripts.agentcom", *args, cwd=ROOT, env={**base, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def via(hub: HubHandle) -> list[str]:
    return ["--url", hub.url, "--token", hub.admin_token]


async def test_submit_list_show_cancel_round_trip(hub: HubHandle) -> None:
    """A task submitted by the CLI is listed, shown and cancelled; --json prints what the API answered."""
    code, out, err = await agentcom("task", "submit", "Count lines", "--command", "wc -l /etc/hostname",
                                    "--check", "file_exists:out.txt", "--priority", "high", *via(hub))  # fmt: skip
    assert code == 0, err
    task_id = out.strip()
    stored = await hub.task(task_id)
    assert stored["executor"] == "shell" and stored["metadata"]["shell_command"] == "wc -l /etc/hostname"
    assert stored["verification_steps"] == [{"type": "file_exists", "target": "out.txt"}]
    code, out, _ = await agentcom("task", "list", *via(hub))
    assert code == 0 and task_id in out and "high" in out
    code, out, _ = await agentcom("task", "show", task_id, "--json", *via(hub))
    assert code == 0 and json.loads(out)["id"] == task_id
    code, out, _ = await agentcom("task", "cancel", task_id, *via(hub))
    assert code == 0 and "cancelled" in out
    assert (await hub.task(task_id))["status"] == "cancelled"


async def test_list_search_asks_the_hub_for_matching_tasks(hub: HubHandle) -> None:
    """`task list --search TEXT` (or -s) lists only the tasks holding TEXT, any case; a bad TEXT is the hub's 422."""
    wanted = await hub.submit(description="Rebuild the Osprey index")
    other = await hub.submit(description="Trim the logs")
    code, out, err = await agentcom("task", "list", "--search", "osprey", *via(hub))
    assert code == 0, err
    assert wanted in out and other not in out
    code, out, err = await agentcom("task", "list", "-s", "TRIM THE", "--json", *via(hub))
    assert code == 0, err
    assert [t["id"] for t in json.loads(out)] == [other]
    code, out, _ = await agentcom("task", "list", "--search", "nowhere", *via(hub))
    assert code == 0 and "no tasks" in out
    code, _, err = await agentcom("task", "list", "--search", "x" * 201, *via(hub))
    assert code == 1 and "422" in err and "Traceback" not in err


async def test_errors_are_one_line_with_the_hubs_reason(hub: HubHandle) -> None:
    """An unknown task, a bad token, an unreachable hub and a bad --check are one line on stderr and exit 1."""
    code, _, err = await agentcom("task", "show", "nope", *via(hub))
    assert code == 1 and "404" in err and "Traceback" not in err
    code, _, err = await agentcom("task", "list", "--url", hub.url, "--token", "wrong")
    assert code == 1 and "401" in err and "wrong" not in err
    code, _, err = await agentcom("task", "submit", "x", "--check", "nonsense", *via(hub))
    assert code == 1 and "TYPE:TARGET" in err
    code, _, err = await agentcom("agents", "--url", "http://127.0.0.1:9", "--token", "t")
    assert code == 1 and "cannot reach the hub" in err


async def test_the_local_hub_is_found_from_its_data_dir(hub: HubHandle) -> None:
    """With no flags, the hub's own data dir (hub.url, admin.token) is used: `agentcom task list` just works."""
    code, out, err = await agentcom("task", "list", env={"AGENTCOM_DATA_DIR": str(hub.data_dir)})
    assert code == 0, err
    assert "no tasks" in out


async def test_environment_and_client_config_give_url_and_token(hub: HubHandle, tmp_path: Path) -> None:
    """AGENTCOM_URL/AGENTCOM_TOKEN work, and so does a client config file with a token_file."""
    code, _, err = await agentcom("agents", env={"AGENTCOM_URL": hub.url, "AGENTCOM_TOKEN": hub.admin_token})
    assert code == 0, err
    token_file = tmp_path / "token"
    token_file.write_text(hub.admin_token + "\n")
    config = tmp_path / "client.toml"
    config.write_text(f'url = "{hub.url}"\ntoken_file = "{token_file}"\n')
    code, out, err = await agentcom("agents", "--json", env={"AGENTCOM_CLIENT_CONFIG": str(config)})
    assert code == 0, err
    assert json.loads(out) == []


async def test_tail_follows_a_task_to_its_end(hub: HubHandle, make_agent: Any) -> None:
    """`task tail` prints the task's events as they happen and exits 0 once an agent completed it."""
    task_id = await hub.submit(description="tail me")
    tail = asyncio.create_task(agentcom("task", "tail", task_id, *via(hub)))
    sim: AgentSim = await make_agent()  # completes what it is given
    code, out, err = await asyncio.wait_for(tail, 60)
    assert code == 0, err
    assert "task_submitted" in out and "task_assigned" in out and sim.agent_id in out
    assert out.strip().endswith(f"{task_id}: completed (unverified)")
