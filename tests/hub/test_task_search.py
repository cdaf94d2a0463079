"""``GET /api/tasks?q=``: text search over the tasks' id, description, repository, agent and goal, with the other
filters and paging, and refused at the edge when too long or unsafe."""

from __future__ import annotations

from typing import Any

from tests.conftest import HubHandle, wait_tasks


async def _ids(handle: HubHandle, **params: Any) -> list[str]:
    r = await handle.http.get("/api/tasks", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["tasks"])
    return [t["id"] for t in body["tasks"]]


async def _register_repo(handle: HubHandle, name: str) -> None:
    r = await handle.http.post("/api/repos", json={"name": name, "url": f"https://forge.invalid/{name}.git"})
    assert r.status_code == 201, r.text


async def test_search_matches_each_field_ignoring_case(hub: HubHandle, make_agent: Any) -> None:
    """q finds a task by its id, description, repository, assigned agent or goal id, in any case, and no other."""
    await make_agent("Runner-Zebra", behaviour="ignore")
    held = await hub.submit(description="plain one")
    await wait_tasks(hub, [held], {"assigned"})
    assert (await hub.task(held))["assigned_to"] == "Runner-Zebra"
    await _register_repo(hub, "Alpha-Widgets")
    await _register_repo(hub, "Beta-Gadgets")  # tasks without a repository may inherit one: name another
    by_desc = await hub.submit(description="Rotate the Kestrel logs", repo="Beta-Gadgets")
    by_repo = await hub.submit(description="plain two", repo="Alpha-Widgets")
    by_goal = await hub.submit(description="plain three", goal_id="goal-Quasar-7", repo="Beta-Gadgets")
    other = await hub.submit(description="nothing to see", repo="Beta-Gadgets")

    assert await _ids(hub, q="kESTREL") == [by_desc]
    assert await _ids(hub, q="alpha-widg") == [by_repo]
    assert await _ids(hub, q="QUASAR") == [by_goal]
    assert await _ids(hub, q="runner-zeb") == [held]
    assert await _ids(hub, q=by_desc[-8:].upper()) == [by_desc]
    assert await _ids(hub, q="no such text") == []
    assert set(await _ids(hub, q="")) == {held, by_desc, by_repo, by_goal, other}  # empty q: no filter


async def test_search_combines_with_status_and_priority(hub: HubHandle, make_agent: Any) -> None:
    """q narrows the status and priority filters rather than replacing them."""
    await make_agent(behaviour="ignore")
    running = await hub.submit(description="deploy the mirror")
    await wait_tasks(hub, [running], {"assigned"})
    queued = await hub.submit(description="deploy the docs")
    urgent = await hub.submit(description="deploy the fix", priority="urgent")
    await hub.submit(description="unrelated", priority="urgent")

    assert await _ids(hub, q="deploy", status="assigned") == [running]
    assert set(await _ids(hub, q="deploy", status="queued")) == {queued, urgent}
    assert await _ids(hub, q="deploy", status="queued", priority="urgent") == [urgent]
    assert await _ids(hub, q="unrelated", status="assigned") == []


async def test_search_pages_with_limit_and_offset(hub: HubHandle) -> None:
    """Matching tasks are paged by limit and offset in the usual order, and count is the page's length."""
    hits = [await hub.submit(description=f"needle {i}") for i in range(5)]
    for i in range(5):
        await hub.submit(description=f"hay {i}")

    assert await _ids(hub, q="NEEDLE", limit=2) == hits[:2]
    assert await _ids(hub, q="needle", limit=2, offset=2) == hits[2:4]
    assert await _ids(hub, q="needle", limit=2, offset=4) == hits[4:]
    assert await _ids(hub, q="needle", limit=2, offset=6) == []


async def test_search_finds_a_task_beyond_the_first_page(hub: HubHandle) -> None:
    """A task that the unfiltered first page does not hold is still found by q."""
    r = await hub.http.post("/api/tasks/batch", json={"tasks": [{"description": f"bulk {i}"} for i in range(60)]})
    assert r.status_code in (200, 201), r.text
    last = await hub.submit(description="the Lost Lighthouse")
    first_page = await _ids(hub, limit=50)
    assert len(first_page) == 50 and last not in first_page

    assert await _ids(hub, q="lost lighthouse", limit=50) == [last]


async def test_search_refuses_a_too_long_text(hub: HubHandle) -> None:
    """q of more than 200 characters is a 422 validation_failed naming q, counted as a rejection; 200 pass."""
    before = hub.hub.n_http_rejections
    r = await hub.http.get("/api/tasks", params={"q": "x" * 201})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "validation_failed"
    assert [e["field"] for e in body["errors"]] == ["q"]
    assert hub.hub.n_http_rejections == before + 1
    assert (await hub.http.get("/api/tasks", params={"q": "x" * 200})).status_code == 200


async def test_search_refuses_control_characters(hub: HubHandle) -> None:
    """q holding a control character (NUL, newline, DEL, C1) is a 422 naming q, each counted as a rejection."""
    await hub.submit(description="line\none")
    before = hub.hub.n_http_rejections
    for bad in ("a\x00b", "line\none", "x\x7f", "\x85"):
        r = await hub.http.get("/api/tasks", params={"q": bad})
        assert r.status_code == 422, (bad, r.text)
        body = r.json()
        assert body["error"] == "validation_failed"
        assert [e["field"] for e in body["errors"]] == ["q"]
    assert hub.hub.n_http_rejections == before + 4


async def test_search_survives_undecodable_bytes(hub: HubHandle) -> None:
    """A q percent-encoding a lone surrogate or invalid UTF-8 answers cleanly (no 500) and matches nothing."""
    await hub.submit(description="something")
    for raw in ("%ED%A0%80", "%FF%FE", "%C0"):
        r = await hub.http.get(f"/api/tasks?q={raw}")
        assert r.status_code in (200, 422), (raw, r.text)
        if r.status_code == 200:
            assert r.json()["tasks"] == []
