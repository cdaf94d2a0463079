"""Dashboard fixes in Debian's Chromium against a real hub: drawer layout, chart labels, labels and keyboard,
pill contrast, dead-letter Cancel, task search/filter/paging and the submit form's executor, repository and checks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import HubHandle, wait_tasks
from tests.dashboard.test_browser import connect_sim, tool_call
from tests.hub.repos.conftest import Remote, make_remote  # noqa: F401  (fixture)

pytest.importorskip("playwright.async_api")
from playwright.async_api import expect  # noqa: E402

from tests.dashboard.conftest import needs_chromium  # noqa: E402

pytestmark = [pytest.mark.browser, needs_chromium]


async def live(page: Any) -> None:
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")


async def test_history_does_not_squeeze_the_drawer(hub: HubHandle, open_dashboard: Any) -> None:
    """With a long timeline, result and history open, the timeline keeps its height and the drawer body scrolls."""
    sim = await connect_sim(hub, "sim-long", behaviour="ignore")
    tid = await hub.submit(description="a task with a long story")
    assign = await sim.wait_for(lambda m: m.get("type") == "task_assign")
    gen = assign["generation"]
    await sim.send({"type": "task_accepted", "task_id": tid, "generation": gen})
    for n in range(1, 16):
        await sim.send(tool_call(tid, gen, n, "read_file", 100 * n))
    output = "\n".join(f"line {n}" for n in range(40))
    result = {"status": "success", "output": output}
    await sim.send({"type": "task_complete", "task_id": tid, "generation": gen, "result": result})
    await wait_tasks(hub, [tid], {"completed"})

    page = await open_dashboard(hub.url, hub.admin_token, width=1280, height=600)
    await page.locator(f'#tasks tr[data-task-id="{tid}"]').click()
    await expect(page.locator('#timeline li[data-type="tool_call"]')).to_have_count(15)
    await page.locator("#detail-body details summary", has_text="History").click()
    sizes = await page.evaluate(
        """() => {
          const t = document.getElementById("timeline"), body = document.getElementById("detail-body");
          const cap = parseFloat(getComputedStyle(t).maxHeight);
          return { height: t.getBoundingClientRect().height, wanted: Math.min(t.scrollHeight, cap),
                   bodyScroll: body.scrollHeight, bodyHeight: body.clientHeight,
                   head: document.getElementById("detail-head").getBoundingClientRect().height,
                   headContent: document.getElementById("detail-head").scrollHeight };
        }"""
    )
    assert sizes["height"] >= sizes["wanted"] - 1, sizes
    assert sizes["head"] >= sizes["headContent"] - 1, sizes
    assert sizes["bodyScroll"] > sizes["bodyHeight"], "the drawer body scrolls instead of squeezing its sections"
    await sim.close()


CHART_BOXES = """async (maxima) => {
  const { renderLatency, renderThroughput } = await import("/dashboard/static/charts.js");
  const out = [];
  for (const max of maxima) {
    const n = 60;
    const series = { bucket_ms: 10000, completed: Array(n).fill(0).map((_, i) => (i === n - 1 ? max : 0)),
      failed: Array(n).fill(0), p50_ms: Array(n).fill(null), p95_ms: Array(n).fill(null) };
    series.p50_ms[n - 1] = max / 2;
    series.p95_ms[n - 1] = max;
    for (const kind of ["latency", "throughput"]) {
      const target = document.createElement("div");
      target.className = "chart";
      document.getElementById("charts-panel").append(target);
      if (kind === "latency") renderLatency(target, series);
      else renderThroughput(target, document.createElement("span"), series);
      const svg = target.querySelector("svg");
      const [, , w, h] = svg.getAttribute("viewBox").split(" ").map(Number);
      for (const t of svg.querySelectorAll("text")) {
        const b = t.getBBox();
        out.push({ kind, max, text: t.textContent, x: b.x, y: b.y, right: b.x + b.width, bottom: b.y + b.height,
                   w, h });
      }
      target.remove();
    }
  }
  return out;
}"""


async def test_chart_labels_fit_and_the_note_matches_the_axis(hub: HubHandle, open_dashboard: Any) -> None:
    """Every chart label lies inside the chart for short and long maxima; the note counts the minutes the axis spans."""
    sim = await connect_sim(hub, "sim-chart")
    tid = await hub.submit(description="finish for the chart")
    await wait_tasks(hub, [tid], {"completed"})
    page = await open_dashboard(hub.url, hub.admin_token)
    await expect(page.locator("#chart-throughput svg rect.ok")).to_have_count(1)
    axis = await page.locator("#chart-throughput svg text").all_text_contents()
    minutes = next(t for t in axis if t.endswith(" min")).lstrip("−")
    assert minutes == "10 min", axis
    await expect(page.locator("#throughput-note")).to_contain_text(f"last {minutes}: 1 done, 0 failed")
    assert "hour" not in (await page.locator("#throughput-note").text_content() or "")

    boxes = await page.evaluate(CHART_BOXES, [7, 950, 59 * 60_000 + 59_000, 11 * 3_600_000, 3 * 86_400_000])
    assert len(boxes) >= 30
    clipped = [b for b in boxes if b["x"] < 0 or b["y"] < 0 or b["right"] > b["w"] or b["bottom"] > b["h"]]
    assert not clipped, clipped
    await sim.close()


async def test_inputs_are_labelled_and_rows_open_with_the_keyboard(hub: HubHandle, open_dashboard: Any) -> None:
    """Every input, select and textarea has a label; Tab reaches a task row and Enter opens its drawer."""
    tid = await hub.submit(description="reach me by keyboard")
    page = await open_dashboard(hub.url, hub.admin_token)
    await live(page)
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea")]
          .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label"))
          .map((e) => e.outerHTML.slice(0, 80))"""
    )
    assert unlabelled == []
    row = page.locator(f'#tasks tr[data-task-id="{tid}"]')
    await expect(row).to_have_attribute("tabindex", "0")
    await page.focus("#task-priority")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.dataset.taskId") == tid
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail")).to_be_visible()
    await expect(page.locator("#detail-head")).to_contain_text("reach me by keyboard")


PILL_CONTRAST = """(statuses) => {
  const rgb = (s) => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92
    : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const host = document.getElementById("counts");
  const out = [];
  const probe = (node, name) => {
    host.append(node);
    const cs = getComputedStyle(node);
    const [a, b] = [lum(rgb(cs.color)), lum(rgb(cs.backgroundColor))].sort((x, y) => y - x);
    out.push({ name, ratio: (a + 0.05) / (b + 0.05), opacity: cs.opacity, color: cs.color, bg: cs.backgroundColor });
    node.remove();
  };
  for (const st of statuses) {
    const span = document.createElement("span");
    span.className = "pill";
    span.dataset.status = st;
    span.textContent = st;
    probe(span, st);
  }
  const conn = document.getElementById("conn"), was = conn.dataset.state;
  for (const st of ["live", "connecting", "offline", "refused", "signed-out"]) {
    conn.dataset.state = st;
    const cs = getComputedStyle(conn);
    const [a, b] = [lum(rgb(cs.color)), lum(rgb(cs.backgroundColor))].sort((x, y) => y - x);
    out.push({ name: `conn-${st}`, ratio: (a + 0.05) / (b + 0.05), opacity: cs.opacity });
  }
  conn.dataset.state = was;
  return out;
}"""
PILL_STATUSES = [
    "queued", "assigned", "blocked", "working", "completed", "ok", "outcome-verified", "outcome-unverified",
    "outcome-partial_pass", "warning", "dead_letter", "outcome-failed", "critical", "cancelled", "offline", "idle",
    "unknown",
]  # fmt: skip


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_pills_meet_aa_contrast(hub: HubHandle, open_dashboard: Any, scheme: str) -> None:
    """Every pill's text against its background, as Chromium computes them, is at least 4.5:1 and fully opaque."""
    page = await open_dashboard(hub.url, hub.admin_token)
    await page.emulate_media(color_scheme=scheme)
    await live(page)
    found = await page.evaluate(PILL_CONTRAST, PILL_STATUSES)
    assert len(found) == len(PILL_STATUSES) + 5
    weak = [p for p in found if p["ratio"] < 4.5 or p["opacity"] != "1"]
    assert not weak, weak


async def test_dead_letter_rows_offer_cancel(hub: HubHandle, open_dashboard: Any) -> None:
    """A dead-lettered task's row has Cancel; it cancels the task, which leaves the dead-letter panel."""
    sim = await connect_sim(hub, behaviour="fail")
    tid = await hub.submit(description="doomed, then cancelled", max_retries=1)
    await wait_tasks(hub, [tid], {"dead_letter"})
    await sim.settled()
    page = await open_dashboard(hub.url, hub.admin_token)
    item = page.locator(f'#dead li[data-task-id="{tid}"]')
    await item.locator('[data-action="cancel"]').click()
    await expect(item).to_have_count(0)
    await expect(page.locator(f'#tasks tr[data-task-id="{tid}"]')).to_have_attribute("data-status", "cancelled")
    assert hub.hub.queue.tasks[tid].status == "cancelled"
    await sim.close()


async def test_tasks_search_filter_and_paging(hub: HubHandle, open_dashboard: Any) -> None:
    """Filtered by status the hub's 129 queued tasks come in pages of 100; search and priority narrow the list."""
    prios = ["urgent", "high", "normal", "low"]
    texts = [f"bulk {n}" + (" needle" if n % 13 == 0 else "") for n in range(130)]
    ids = await asyncio.gather(*(hub.submit(description=t, priority=prios[n % 4]) for n, t in enumerate(texts)))
    cancelled = ids[5]
    assert (await hub.http.post(f"/api/tasks/{cancelled}/cancel")).status_code == 200
    page = await open_dashboard(hub.url, hub.admin_token)
    rows = page.locator("#tasks tr[data-task-id]")
    await expect(rows).to_have_count(100)
    await page.select_option("#task-status", "queued")  # more than the page holds: the hub is asked
    await expect(page.locator("#task-page")).to_contain_text("page 1 of 2 · 129 tasks")
    await page.click('#task-pager [data-page="next"]')
    await expect(rows).to_have_count(29)
    await expect(page.locator('#task-pager [data-page="next"]')).to_be_disabled()
    await page.click('#task-pager [data-page="prev"]')
    await expect(rows).to_have_count(100)

    await page.fill("#task-search", "needle")  # n % 13 == 0: 0, 13, ..., 117
    await expect(rows).to_have_count(10)
    await expect(page.locator("#task-pager")).to_be_hidden()
    for text in await rows.all_text_contents():
        assert "needle" in text
    await page.select_option("#task-priority", "urgent")  # n % 13 == 0 and n % 4 == 0: 0, 52, 104
    await expect(rows).to_have_count(3)
    await page.fill("#task-search", "")
    await page.select_option("#task-priority", "")
    await page.select_option("#task-status", "cancelled")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-task-id", cancelled)
    await page.fill("#task-search", "no such words")
    await expect(page.locator("#tasks .empty")).to_contain_text("No task matches")


async def test_submit_form_chooses_executor_repo_and_checks(
    hub: HubHandle,
    make_remote: Any,  # noqa: F811
    open_dashboard: Any,
) -> None:
    """The form lists registered repositories; the task gets the chosen executor, repository and checks."""
    remote: Remote = make_remote("webapp")
    assert (await hub.http.post("/api/repos", json={"name": "webapp", "url": remote.url})).status_code == 201
    page = await open_dashboard(hub.url, hub.admin_token)
    repo = page.locator('#submit-form select[name="repo"]')
    await expect(repo.locator('option[value="webapp"]')).to_have_count(1)
    await page.fill("#submit-form textarea[name=description]", "run it my way")
    await page.select_option('#submit-form select[name="executor"]', "shell")
    await repo.select_option("webapp")
    await page.fill("#submit-form textarea[name=checks]", "make test\n\n  ruff check .  \n")
    await page.click("#submit-form button[type=submit]")
    ok = page.locator('.toast[data-kind="ok"]').last
    await expect(ok).to_contain_text("Submitted task-")
    tid = (await ok.text_content() or "").split()[1]
    task = (await hub.http.get(f"/api/tasks/{tid}")).json()
    assert task["repo"] == "webapp"
    assert hub.hub.queue.tasks[tid].executor == "shell"
    steps = [(s["type"], s["target"]) for s in hub.hub.queue.tasks[tid].verification_steps]
    assert steps == [("command_succeeds", "make test"), ("command_succeeds", "ruff check .")]
