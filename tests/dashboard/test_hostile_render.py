"""Hostile task, agent and event fields reach the dashboard in Chromium as text, never as markup (needs Chromium)."""

from __future__ import annotations

import itertools

import pytest

from shared.agent_sim import AgentSim
from tests.conftest import wait_tasks
from tests.dashboard.conftest import needs_chromium

pytest.importorskip("playwright.async_api")
from playwright.async_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, needs_chromium]

ATTACKS = (
    "<img src=x onerror=window.__pwned=1>",
    '"><svg onload=window.__pwned=1>',
    "'><img src=x onerror=window.__pwned=1 x='",
    "</script><script>window.__pwned=1</script>",
    "javascript:window.__pwned=1",
    '<a href="javascript:window.__pwned=1">go</a>',
    '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
    "&lt;b&gt; stays &amp; literal",
)
_next = itertools.count()


def hostile(label: str) -> str:
    """A distinct hostile value per field: a short label (to find it on the page) and the next attack."""
    return f"{label} {ATTACKS[next(_next) % len(ATTACKS)]}"


# Runs before the page's own scripts (and outside its CSP): records every element added or changed that could run
# script or load a resource, even one that a later render replaced again.
WATCH_INJECTIONS = """
window.__injected = [];
const RISKY = new Set(["IMG", "IFRAME", "OBJECT", "EMBED", "SCRIPT", "FRAME", "BASE", "META", "LINK", "FORM"]);
function risky(node) {
  if (node.nodeType !== 1) return null;
  if (RISKY.has(node.tagName.toUpperCase()) && !node.closest("head")
      && !(node.tagName === "SCRIPT" && (node.getAttribute("src") || "").startsWith("/dashboard/static/"))
      && !["submit-form", "login-form", "goal-form", "task-filter"].includes(node.id)) return node.tagName;
  for (const attr of node.attributes) {
    const name = attr.name.toLowerCase();
    if (name.startsWith("on") || name === "srcdoc") return `${node.tagName}[${name}]`;
    if ((name === "href" || name === "src" || name === "action") && /^\\s*javascript:/i.test(attr.value)) {
      return `${node.tagName}[${name}=${attr.value}]`;
    }
  }
  return null;
}
function check(node) {
  for (const n of [node, ...(node.querySelectorAll ? node.querySelectorAll("*") : [])]) {
    const what = risky(n);
    if (what) window.__injected.push(what);
  }
}
new MutationObserver((records) => {
  for (const r of records) {
    if (r.type === "attributes") check(r.target);
    for (const n of r.addedNodes) check(n);
  }
}).observe(document, { childList: true, subtree: true, attributes: true });
"""

FINAL_QUERY = """() => ({
  pwned: typeof window.__pwned,
  injected: window.__injected,
  found: [...document.querySelectorAll(
    "body img, body iframe, body object, body embed, [onerror], [onload], [onclick], [onmouseover], [srcdoc],"
    + " [href^='javascript' i]")].map((n) => n.outerHTML.slice(0, 120)),
  scripts: document.scripts.length,
})"""


async def identify(sim: AgentSim, **fields: object) -> None:
    await sim.connect(identify=False)
    await sim.send({"type": "identify", "agent_id": sim.agent_id, "token": sim.token, **fields})
    await sim.wait_for(lambda m: m.get("type") == "identified")


def tool_event(label: str, task_id: str, generation: int, n: int) -> dict:
    return {
        "type": "task_progress",
        "task_id": task_id,
        "generation": generation,
        "execution_event": {
            "event_type": "tool_call",
            "tool_name": hostile(f"{label}-tool"),
            "args_summary": hostile(f"{label}-args"),
            "result_summary": hostile(f"{label}-out"),
            "model": hostile(f"{label}-model"),
            "duration_ms": 5 * n,
            "iteration": n,
            "tokens_so_far": 100 * n,
            hostile("evkey"): hostile("evval"),
        },
    }


async def test_hostile_fields_render_as_text_and_inject_nothing(hub, browser):
    """Hostile agent, task, event, result and verification texts show verbatim as text; no element is injected."""
    errors: list[str] = []
    page = await browser.new_page(viewport={"width": 1600, "height": 1000})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(10_000)
    budget_key = hostile("budget")  # a budget named by hostile text, shown in the costs panel
    assert (await hub.http.put("/api/costs/budgets", json={"tasks": {budget_key: {"usd": 1.0}}})).status_code == 200
    await page.add_init_script(WATCH_INJECTIONS)
    await page.goto(f"{hub.url}/dashboard#token={hub.admin_token}")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    # An admin token may identify as any agent id, so the id itself can be hostile; so can every identify field.
    agent_id, name, cap = hostile("agent-id"), hostile("agent-name"), hostile("cap")
    client, sandbox = hostile("client"), hostile("sandbox")
    sim = AgentSim(hub.ws_url, agent_id, hub.admin_token, behaviour="ignore")
    await identify(
        sim,
        name=name,
        capabilities=[cap],
        client_type=client,
        sandbox_level=sandbox,
        models=[hostile("model")],
        status=hostile("status"),
    )
    agent_row = page.locator("#agents tr[data-agent-id]")
    await expect(agent_row).to_have_count(1)
    for text in (agent_id, name, cap, client, sandbox):
        await expect(agent_row).to_contain_text(text)
    assert await agent_row.get_attribute("data-agent-id") == agent_id

    async def run(description: str, **body: object) -> tuple[str, int]:
        tid = await hub.submit(description=description, needed_capabilities=[cap], **body)
        assign = await sim.wait_for(lambda m: m.get("type") == "task_assign" and m["task_id"] == tid)
        await sim.send({"type": "task_accepted", "task_id": tid, "generation": assign["generation"]})
        return tid, assign["generation"]

    # 1: completed, with tool calls, a free-form event, a result and a verification report.
    done_desc = hostile("done-desc")
    metadata = {hostile("meta-key"): hostile("meta-value"), "nested": {hostile("deep-key"): [hostile("deep")]}}
    done, gen = await run(
        done_desc,
        metadata=metadata,
        success_criteria=[hostile("criterion")],
        file_hints=[{"path": hostile("hint"), "reason": hostile("hint-why")}],
        repo=hostile("repo"),
        branch=hostile("branch"),
    )
    calls = [tool_event("done", done, gen, n) for n in (1, 2)]
    for call in calls:
        await sim.send(call)
    note_type, note_text = hostile("note-type"), hostile("note-text")
    await sim.send(
        {
            "type": "task_progress",
            "task_id": done,
            "generation": gen,
            "execution_event": {"event_type": note_type, "text": note_text},
        }
    )
    output, reason, vstatus = hostile("output"), hostile("reason"), hostile("vstatus")
    await sim.send(
        {
            "type": "task_complete",
            "task_id": done,
            "generation": gen,
            "tokens_used": 7,
            "result": {"status": "success", "output": output, "reason": reason, "model": hostile("rmodel")},
            "verification_report": {
                "status": vstatus,
                "checks": [{"name": hostile("check"), "status": "passed", "output": hostile("vout")}],
            },
            "verification_history": [{"report": hostile("vhist")}],
        }
    )
    await wait_tasks(hub, [done], {"completed"})

    # 2: failed with a hostile error, to dead-letter.
    dead_desc, error = hostile("dead-desc"), hostile("error")
    dead, gen = await run(dead_desc, max_retries=1)
    await sim.send({"type": "task_failed", "task_id": dead, "generation": gen, "error": error})
    await wait_tasks(hub, [dead], {"dead_letter"})

    # 3: left working, so the agent row shows it and its last tool; more events stream while its detail is open.
    live_desc = hostile("live-desc")
    live, live_gen = await run(live_desc)
    first = tool_event("live1", live, live_gen, 1)
    await sim.send(first)

    # 4: submitted from the page itself.
    form_desc = hostile("form-desc")
    await page.fill("#submit-form textarea", form_desc)
    await page.click("#submit-form button[type=submit]")
    await expect(page.locator('.toast[data-kind="ok"]').last).to_contain_text("Submitted task-")

    # 5: a goal from the page's goal form; the goals panel lists it.
    goal_desc = hostile("goal-desc")
    await page.fill("#goal-form textarea[name=description]", goal_desc)
    await page.click("#goal-form button[type=submit]")
    await expect(page.locator('.toast[data-kind="ok"]').last).to_contain_text("Submitted goal")
    await expect(page.locator("#goals-panel")).to_contain_text(goal_desc)
    await expect(page.locator("#costs-panel")).to_contain_text(budget_key)
    search = hostile("search")  # typed into the task search: no task matches, nothing is injected
    await page.fill("#task-search", search)
    await expect(page.locator("#tasks .empty")).to_contain_text("No task matches")
    await page.fill("#task-search", "")

    tasks = page.locator("#tasks")
    for text in (done_desc, dead_desc, live_desc, form_desc, agent_id):
        await expect(tasks).to_contain_text(text)
    dead_item = page.locator(f'#dead li[data-task-id="{dead}"]')
    await expect(dead_item).to_contain_text(dead_desc)
    await expect(dead_item).to_contain_text(error)
    await expect(agent_row).to_contain_text(live_desc)
    await expect(agent_row).to_contain_text(first["execution_event"]["tool_name"])

    await page.locator(f'#tasks tr[data-task-id="{done}"]').click()
    detail = page.locator("#detail-body")
    await expect(page.locator("#timeline li[data-seq]")).to_have_count(3)
    for call in calls:
        for key in ("tool_name", "args_summary", "result_summary"):
            await expect(page.locator("#timeline")).to_contain_text(call["execution_event"][key])
    # The report's own status word is not shown: the page shows the outcome the hub read from the checks.
    for text in (note_type, note_text, done_desc, output, reason, agent_id, cap):
        await expect(detail).to_contain_text(text)

    await page.locator(f'#tasks tr[data-task-id="{live}"]').click()
    await expect(page.locator("#timeline li[data-seq]")).to_have_count(1)
    streamed = tool_event("live2", live, live_gen, 2)
    await sim.send(streamed)  # appended to the open timeline as it arrives
    await expect(page.locator("#timeline li[data-seq]")).to_have_count(2)
    for key in ("tool_name", "args_summary", "result_summary"):
        await expect(page.locator("#timeline li[data-seq]").nth(1)).to_contain_text(streamed["execution_event"][key])

    await page.locator(f'#dead li[data-task-id="{dead}"] a').click()
    await expect(detail).to_contain_text(error)
    await expect(page.locator("#detail-head")).to_contain_text(dead_desc)

    await sim.close()
    await expect(page.locator("#agents tr[data-agent-id]")).to_have_attribute("data-state", "offline")

    result = await page.evaluate(FINAL_QUERY)
    await page.close()
    assert result["pwned"] == "undefined", result
    assert result["injected"] == [], result
    assert result["found"] == [], result
    assert result["scripts"] == 1, result
    assert not errors, f"JavaScript errors on the page: {errors}"
