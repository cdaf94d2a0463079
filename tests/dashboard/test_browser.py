"""The dashboard in Debian's Chromium, against a real hub and simulated agents (skipped without Chromium)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx
import pytest

from hub.dashboard_socket import dashboard_for
from shared.agent_sim import AgentSim
from tests.conftest import SCALE, wait_tasks
from tests.dashboard.conftest import ARTIFACTS, needs_chromium

pytest.importorskip("playwright.async_api")
from playwright.async_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, needs_chromium]


def tool_call(task_id: str, generation: int, n: int, tool: str, tokens: int) -> dict:
    return {
        "type": "task_progress",
        "task_id": task_id,
        "generation": generation,
        "execution_event": {
            "event_type": "tool_call",
            "tool_name": tool,
            "args_summary": f"path=src/step{n}.py",
            "result_summary": f"{n * 10} lines",
            "duration_ms": 40 * n,
            "iteration": n,
            "tokens_so_far": tokens,
        },
    }


async def connect_sim(hub, agent_id: str | None = None, **kwargs) -> AgentSim:
    agent_id = agent_id or f"sim-{uuid.uuid4().hex[:6]}"
    sim = AgentSim(hub.ws_url, agent_id, await hub.mint_token(agent_id), **kwargs)
    await sim.connect()
    return sim


async def test_refused_without_a_token(hub, open_dashboard):
    """Without a token the page asks for one, the hub refuses the state, and a bad token is refused and forgotten."""
    page = await open_dashboard(hub.url)
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#dashboard")).to_be_hidden()
    async with httpx.AsyncClient(base_url=hub.url) as anonymous:
        assert (await anonymous.get("/api/dashboard/state")).status_code == 401
    await page.fill("#login-form input[name=token]", "not-a-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_contain_text("refused")
    await expect(page.locator("#dashboard")).to_be_hidden()
    assert await page.evaluate("localStorage.getItem('agentcom_token')") is None


async def test_agents_appear_when_a_simulated_agent_connects(hub, open_dashboard):
    """A viewer sees an agent appear live (state, capabilities), then go offline; the token leaves the URL."""
    page = await open_dashboard(hub.url, await hub.mint_token("wall-screen", role="viewer"))
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    assert "token" not in page.url
    await expect(page.locator("#agents .empty")).to_be_visible()
    sim = await connect_sim(hub, "sim-alpha", capabilities=["code", "python"])
    row = page.locator('#agents tr[data-agent-id="sim-alpha"]')
    await expect(row).to_have_attribute("data-state", "idle")
    await expect(row).to_contain_text("python")
    await expect(page.locator('#counts [data-count="agents"]')).to_contain_text("1 agents online")
    await expect(page.locator("#role")).to_contain_text("read-only")
    await expect(page.locator("#submit-panel")).to_be_hidden()
    await sim.close()
    await expect(row).to_have_attribute("data-state", "offline")
    await expect(page.locator('.alert[data-condition="agents_offline"]')).to_be_visible()


async def test_task_moves_queued_working_completed_with_live_tool_calls(hub, open_dashboard):
    """A task goes queued -> assigned -> working -> completed on the page; its tool calls stream into the timeline."""
    page = await open_dashboard(hub.url, hub.admin_token)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    tid = await hub.submit(description="stream some tool calls")
    row = page.locator(f'#tasks tr[data-task-id="{tid}"]')
    await expect(row).to_have_attribute("data-status", "queued")

    sim = await connect_sim(hub, "sim-worker", behaviour="ignore")
    assign = await sim.wait_for(lambda m: m.get("type") == "task_assign")
    gen = assign["generation"]
    await expect(row).to_have_attribute("data-status", "assigned")
    await sim.send({"type": "task_accepted", "task_id": tid, "generation": gen})
    await expect(row).to_have_attribute("data-status", "working")
    await expect(page.locator('#agents tr[data-agent-id="sim-worker"]')).to_have_attribute("data-state", "working")

    await sim.send(tool_call(tid, gen, 1, "read_file", 900))
    await expect(row).to_contain_text("1 tools")
    await row.click()
    timeline = page.locator('#timeline li[data-type="tool_call"]')
    await expect(timeline).to_have_count(1)  # from the stored trajectory
    await expect(timeline.first).to_contain_text("read_file")

    await sim.send(tool_call(tid, gen, 2, "run_tests", 2500))
    await expect(timeline).to_have_count(2)  # live, while the task runs
    second = timeline.nth(1)
    for text in ("run_tests", "path=src/step2.py", "20 lines", "80 ms", "it 2"):
        await expect(second).to_contain_text(text)
    await expect(page.locator('#detail-counters [data-counter="tokens"]')).to_contain_text("2,500")
    await expect(page.locator('#detail-counters [data-counter="tools"]')).to_contain_text("2")
    await expect(page.locator('#agents tr[data-agent-id="sim-worker"]')).to_contain_text("run_tests")

    await sim.send(
        {
            "type": "task_complete",
            "task_id": tid,
            "generation": gen,
            "tokens_used": 3100,
            "result": {"status": "success", "output": "all green"},
        }
    )
    await expect(row).to_have_attribute("data-status", "completed")
    await expect(page.locator("#detail-head")).to_contain_text("completed")
    await expect(page.locator("#detail-body pre.output")).to_contain_text("all green")
    await expect(page.locator('#detail-counters [data-counter="tokens"]')).to_contain_text("3,100")
    await expect(page.locator("#chart-throughput svg rect.ok")).to_have_count(1)
    await sim.close()


async def test_submit_cancel_and_retry_from_the_page_and_errors_are_shown(hub, open_dashboard):
    """The form submits through the API with the token; cancel and retry work; a refused request is shown."""
    page = await open_dashboard(hub.url, hub.admin_token)
    await page.fill("#submit-form textarea", "urgent: written in the browser")
    await page.click("#submit-form button[type=submit]")
    ok = page.locator('.toast[data-kind="ok"]').last
    await expect(ok).to_contain_text("Submitted task-")
    tid = re.search(r"task-[0-9a-f]{16}", await ok.text_content() or "").group(0)  # type: ignore[union-attr]
    task = hub.hub.queue.tasks[tid]
    assert (task.description, task.priority, task.submitted_by) == ("written in the browser", 0, "admin")

    row = page.locator(f'#tasks tr[data-task-id="{tid}"]')
    await expect(row).to_have_attribute("data-status", "queued")
    await row.locator('[data-action="cancel"]').click()
    await expect(row).to_have_attribute("data-status", "cancelled")
    assert hub.hub.queue.tasks[tid].status == "cancelled"
    await row.locator('[data-action="retry"]').click()
    await expect(row).to_have_attribute("data-status", "queued")

    await page.fill("#submit-form textarea", "x" * 10_001)
    await page.click("#submit-form button[type=submit]")
    error = page.locator('.toast[data-kind="error"]')
    await expect(error).to_contain_text("422 validation_failed")
    await expect(error).to_contain_text("description")


async def test_dead_letter_panel_retries_a_task(hub, open_dashboard):
    """A dead-lettered task shows in its panel with the reason and an alert; Retry sends it back to work."""
    sim = await connect_sim(hub, behaviour="fail")
    tid = await hub.submit(description="doomed at first", max_retries=1)
    await wait_tasks(hub, [tid], {"dead_letter"})
    await sim.settled()
    page = await open_dashboard(hub.url, hub.admin_token)
    item = page.locator(f'#dead li[data-task-id="{tid}"]')
    await expect(item).to_contain_text("agent_error")
    await expect(page.locator('.alert[data-condition="dead_letter"]')).to_be_visible()
    sim.behaviour = "complete"
    await item.locator('[data-action="retry"]').click()
    await expect(item).to_have_count(0)
    await expect(page.locator(f'#tasks tr[data-task-id="{tid}"]')).to_have_attribute("data-status", "completed")
    await sim.close()


async def test_page_reconnects_and_takes_a_fresh_snapshot(hub, open_dashboard):
    """When the socket drops, the page reconnects with backoff and rebuilds itself from a new snapshot."""
    page = await open_dashboard(hub.url, hub.admin_token)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    for client in list(dashboard_for(hub.hub).clients):
        await client.conn.close(1012, "test restart")
    tid = await hub.submit(description="submitted while the page was away")
    await expect(page.locator(f'#tasks tr[data-task-id="{tid}"]')).to_have_attribute("data-status", "queued")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    assert await page.evaluate("window.agentcom.probe.snapshots") >= 2


async def test_screenshots_of_a_busy_fleet(hub, open_dashboard):
    """Saves artifacts/dashboard*.png (1280x800, task detail, phone width) with agents working and tool calls."""
    workers = [
        await connect_sim(hub, f"builder-{n}", behaviour="ignore", capabilities=["code", "python"]) for n in range(1, 4)
    ]
    helper = await connect_sim(hub, "docs-writer", capabilities=["docs"])
    for n, (text, prio) in enumerate(
        [
            ("Fix the flaky store test", "urgent"),
            ("Refactor the parser", "high"),
            ("Add retries to the HTTP client", "normal"),
            ("Write the queue docs", "low"),
            ("Profile the scheduler", "normal"),
            ("Bump dependencies", "low"),
        ]
    ):
        await hub.submit(description=text, priority=prio, needed_capabilities=["docs"] if n > 2 else [])
    for sim in workers:
        rec = await sim.wait_for(lambda m: m.get("type") == "task_assign")
        await sim.send({"type": "task_accepted", "task_id": rec["task_id"], "generation": rec["generation"]})
        for n, tool in enumerate(["read_file", "grep", "run_tests"], 1):
            await sim.send(tool_call(rec["task_id"], rec["generation"], n, tool, 700 * n))
        await sim.send(
            {"type": "resource_report", "cpu_percent": 35.0, "ram_used_bytes": 3 << 30, "ram_total_bytes": 16 << 30}
        )
    await hub.submit(description="Waiting for a GPU agent", needed_capabilities=["gpu"])
    ARTIFACTS.mkdir(exist_ok=True)

    page = await open_dashboard(hub.url, hub.admin_token)
    await expect(page.locator('#agents tr[data-state="working"]')).to_have_count(3)
    await page.screenshot(path=ARTIFACTS / "dashboard.png")
    await page.locator('#tasks tr[data-status="working"]').first.click()
    await expect(page.locator('#timeline li[data-type="tool_call"]')).to_have_count(3)
    await page.screenshot(path=ARTIFACTS / "dashboard-task.png")

    phone = await open_dashboard(hub.url, hub.admin_token, width=390, height=844)
    await expect(phone.locator('#agents tr[data-state="working"]')).to_have_count(3)
    assert await phone.evaluate("document.scrollingElement.scrollWidth") <= 390, "no sideways scroll on a phone"
    await phone.screenshot(path=ARTIFACTS / "dashboard-phone.png", full_page=True)
    for sim in [*workers, helper]:
        await sim.close()


async def test_stays_responsive_with_100_agents_and_1000_tasks(make_hub, open_dashboard):
    """100 agents and 1,000 tasks: the snapshot stays small, the page renders it quickly and keeps up with a burst."""
    from hub.task_submit import TaskSubmit

    hub = await make_hub(sqlite_synchronous="NORMAL")
    sims = list(await asyncio.gather(*(connect_sim(hub, f"fleet-{n:03d}", behaviour="ignore") for n in range(100))))
    now = hub.hub.clock.now_ms()
    await asyncio.gather(
        *(hub.hub.queue.submit(TaskSubmit(description=f"scale task {n}").to_task("admin", now)) for n in range(1000))
    )
    hub.hub.fleet.scheduler.wake()
    await asyncio.gather(*(s.wait_for(lambda m: m.get("type") == "task_assign") for s in sims))

    r = await hub.http.get("/api/dashboard/state")
    assert len(r.content) < 400_000, f"snapshot is {len(r.content)} bytes"
    started = time.perf_counter()
    page = await open_dashboard(hub.url, hub.admin_token)
    await expect(page.locator("#agents tr[data-agent-id]")).to_have_count(100)
    await expect(page.locator("#tasks tr[data-task-id]")).to_have_count(100)
    visible_s = time.perf_counter() - started
    render_ms = (await page.evaluate("window.agentcom.probe"))["lastRenderMs"]
    assert visible_s < 5 * SCALE and render_ms < 1000 * SCALE, (visible_s, render_ms)

    async def finish(sim: AgentSim) -> None:
        rec = sim.received[-1]
        await sim.send({"type": "task_accepted", "task_id": rec.task_id, "generation": rec.generation})
        await sim.send(tool_call(rec.task_id, rec.generation, 1, "read_file", 500))
        await sim.send(
            {
                "type": "task_complete",
                "task_id": rec.task_id,
                "generation": rec.generation,
                "result": {"status": "success"},
            }
        )

    await asyncio.gather(*(finish(s) for s in sims))
    await expect(page.locator('#counts [data-count="completed"]')).to_contain_text("100 completed")
    assert (await page.evaluate("window.agentcom.probe"))["maxRenderMs"] < 1000 * SCALE
    for sim in sims:
        await sim.close()


async def test_a_long_timeline_is_loaded_page_by_page(make_hub, open_dashboard):
    """A trajectory larger than one byte-bounded page is fetched page after page until the drawer shows it all."""
    hub = await make_hub(subscribe_page_bytes=16 * 1024)
    tid = await hub.submit(description="a chatty task")
    sim = await connect_sim(hub, "sim-chatty", behaviour="ignore")
    assign = await sim.wait_for(lambda m: m.get("type") == "task_assign")
    gen = assign["generation"]
    await sim.send({"type": "task_accepted", "task_id": tid, "generation": gen})
    n_events = 40  # about 2 KB each as shown: five pages or more of 16 KiB
    for n in range(1, n_events + 1):
        event = tool_call(tid, gen, n, "read_file", 100 * n)
        event["execution_event"]["result_summary"] = f"{n}: " + "z" * 1500
        await sim.send(event)
    with hub.hub.bus.subscribe() as events:
        async with asyncio.timeout(20 * SCALE):
            while hub.hub.trajectory._next_seq.get(tid, 1) <= n_events:
                await events.get()
    page = await open_dashboard(hub.url, hub.admin_token)
    await page.locator(f'#tasks tr[data-task-id="{tid}"]').click()
    timeline = page.locator('#timeline li[data-type="tool_call"]')
    await expect(timeline).to_have_count(n_events)
    await expect(timeline.last).to_contain_text(f"{n_events}: z")
    await expect(page.locator("#detail-body h3").first).not_to_contain_text("loading more")
    await sim.close()
