"""A fake forge speaking the GitHub REST v3 shape of pull requests, holding them in memory.

Serves ``GET /repos/{owner}/{repo}``, ``POST /repos/{owner}/{repo}/pulls`` (201; 422 ``A pull request already
exists`` for a second open one on the same head and base; 422 ``Validation Failed`` for a missing field or a body
above 65536 characters), ``GET /repos/{owner}/{repo}/pulls`` (``state``, ``head=owner:branch``, ``base``,
``per_page``, ``page``), ``GET /repos/{owner}/{repo}/pulls/{number}`` and ``POST
/repos/{owner}/{repo}/issues/{number}/labels``. Every call needs ``Authorization: Bearer <token>`` (or ``token
<token>``): none or a wrong one is 401 ``Bad credentials``; a read-only token writing is 403; an unknown repository is
404 ``Not Found``. Responses carry the fields real clients read (``number``, ``html_url``, ``state``, ``head``,
``base``, ``labels``...).

Run it for a demo: ``python -m shared.fakes.forge_server --port 0 --token T --repo owner/name`` (prints its URL).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.fakes.script import ScriptedServer, serve_forever

DOCS = "https://docs.github.com/rest/pulls/pulls"
MAX_BODY_CHARS = 65536
"""GitHub's limit on a pull request's body."""
MAX_REQUEST_BYTES = 1_000_000
MAX_PULLS = 10_000
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}\Z")


@dataclass
class FakeRepo:
    owner: str
    name: str
    default_branch: str = "main"
    pulls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra, "documentation_url": DOCS}, status_code=status)


class FakeForgeServer(ScriptedServer):
    """Fake GitHub: ``async with FakeForgeServer(token="t", repos=["acme/demo"]) as forge: forge.url``."""

    def __init__(self, *, token: str = "fake-forge-token", read_token: str | None = None,
                 repos: Iterable[str] = ()) -> None:  # fmt: skip
        super().__init__()
        self.token = token
        self.read_token = read_token
        """A token that may read but not write (its writes get 403)."""
        self.repos: dict[str, FakeRepo] = {}
        for full_name in repos:
            self.add_repo(full_name)

    def __repr__(self) -> str:  # never the tokens
        return f"<FakeForgeServer url={self._url} repos={len(self.repos)} pulls={len(self.pulls())}>"

    def add_repo(self, full_name: str, default_branch: str = "main") -> FakeRepo:
        owner, _, name = full_name.partition("/")
        if not (_NAME.match(owner) and _NAME.match(name)):
            raise ValueError(f"not an owner/name: {full_name!r}")
        repo = self.repos[full_name.lower()] = FakeRepo(owner, name, default_branch)
        return repo

    def pulls(self, full_name: str | None = None) -> list[dict[str, Any]]:
        """The pull requests held (of one repository, or all), oldest first."""
        repos = self.repos.values() if full_name is None else [self.repos[full_name.lower()]]
        return [pull for repo in repos for pull in repo.pulls]

    def build_app(self) -> Starlette:
        base = "/repos/{owner}/{repo}"
        return Starlette(
            routes=[
                Route(base, self.get_repo, methods=["GET"]),
                Route(base + "/pulls", self.list_pulls, methods=["GET"]),
                Route(base + "/pulls", self.create_pull, methods=["POST"]),
                Route(base + "/pulls/{number:int}", self.get_pull, methods=["GET"]),
                Route(base + "/issues/{number:int}/labels", self.add_labels, methods=["POST"]),
            ]
        )

    def _access(self, request: Request) -> str | None:
        """``write``, ``read`` or None for the request's token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or not token:
            return None
        if token == self.token:
            return "write"
        return "read" if self.read_token is not None and token == self.read_token else None

    async def _guard(self, request: Request, write: bool) -> tuple[FakeRepo | None, Any, Response | None]:
        """The repository and JSON body of an authorised request, or the error response to send instead."""
        length = request.headers.get("content-length") or "0"
        if not length.isdigit() or int(length) > MAX_REQUEST_BYTES:
            return None, None, _error(413, "Payload too large")
        body = await self.record(request)
        access = self._access(request)
        if access is None:
            return None, body, _error(401, "Bad credentials")
        params = request.path_params
        repo = self.repos.get(f"{params['owner']}/{params['repo']}".lower())
        if repo is None:
            return None, body, _error(404, "Not Found")
        if write and access != "write":
            return None, body, _error(403, "Resource not accessible by personal access token")
        if write and not isinstance(body, dict):
            return None, body, _error(400, "Problems parsing JSON")
        return repo, body, None

    def _repo_json(self, repo: FakeRepo) -> dict[str, Any]:
        return {"id": zlib.crc32(repo.full_name.encode()), "name": repo.name, "full_name": repo.full_name,
                "owner": {"login": repo.owner}, "private": False, "default_branch": repo.default_branch,
                "html_url": f"{self.url}/{repo.full_name}"}  # fmt: skip

    async def get_repo(self, request: Request) -> Response:
        repo, _, refused = await self._guard(request, write=False)
        if refused is not None or repo is None:
            return refused or _error(404, "Not Found")
        return JSONResponse(self._repo_json(repo))

    async def create_pull(self, request: Request) -> Response:
        repo, body, refused = await self._guard(request, write=True)
        if refused is not None or repo is None:
            return refused or _error(404, "Not Found")
        missing = [name for name in ("title", "head", "base") if not isinstance(body.get(name), str) or not body[name]]
        if missing:
            errors = [{"resource": "PullRequest", "code": "missing_field", "field": name} for name in missing]
            return _error(422, "Validation Failed", errors=errors)
        text = body.get("body")
        if text is not None and (not isinstance(text, str) or len(text) > MAX_BODY_CHARS):
            errors = [{"resource": "Issue", "code": "custom", "field": "body",
                       "message": f"body is too long (maximum is {MAX_BODY_CHARS} characters)"}]  # fmt: skip
            return _error(422, "Validation Failed", errors=errors)
        head_owner, _, head_ref = body["head"].rpartition(":")
        label = f"{head_owner or repo.owner}:{head_ref}"
        if any(p["state"] == "open" and p["head"]["label"] == label and p["base"]["ref"] == body["base"]
               for p in repo.pulls):  # fmt: skip
            errors = [{"resource": "PullRequest", "code": "custom", "message": f"A pull request already exists for "
                       f"{label}."}]  # fmt: skip
            return _error(422, "Validation Failed", errors=errors)
        if len(self.pulls()) >= MAX_PULLS:
            return _error(422, "Validation Failed", errors=[{"code": "custom", "message": "too many pull requests"}])
        number = len(repo.pulls) + 1
        pull = {
            "id": 1000 + len(self.pulls()), "number": number, "state": "open", "draft": bool(body.get("draft")),
            "title": body["title"], "body": text, "labels": [], "created_at": _now(), "updated_at": _now(),
            "url": f"{self.url}/repos/{repo.full_name}/pulls/{number}",
            "html_url": f"{self.url}/{repo.full_name}/pull/{number}",
            "head": {"label": label, "ref": head_ref, "repo": {"full_name": repo.full_name}},
            "base": {"label": f"{repo.owner}:{body['base']}", "ref": body["base"],
                     "repo": {"full_name": repo.full_name}},
            "user": {"login": "agentcom"}, "merged": False,
        }  # fmt: skip
        repo.pulls.append(pull)
        return JSONResponse(pull, status_code=201, headers={"location": pull["url"]})

    async def list_pulls(self, request: Request) -> Response:
        repo, _, refused = await self._guard(request, write=False)
        if refused is not None or repo is None:
            return refused or _error(404, "Not Found")
        query = request.query_params
        state, head, base = query.get("state", "open"), query.get("head"), query.get("base")
        if state not in ("open", "closed", "all"):
            return _error(422, "Validation Failed", errors=[{"resource": "PullRequest", "field": "state",
                                                              "code": "invalid"}])  # fmt: skip
        try:
            per_page, page = min(int(query.get("per_page", 30)), 100), max(int(query.get("page", 1)), 1)
        except ValueError:
            return _error(400, "Invalid pagination parameters")
        chosen = [
            p
            for p in repo.pulls
            if (state == "all" or p["state"] == state)
            and (head is None or p["head"]["label"] == head)
            and (base is None or p["base"]["ref"] == base)
        ]
        chosen.reverse()  # newest first, like GitHub's default sort (created, desc)
        return JSONResponse(chosen[(page - 1) * per_page : page * per_page])  # fmt: skip

    async def get_pull(self, request: Request) -> Response:
        repo, _, refused = await self._guard(request, write=False)
        if refused is not None or repo is None:
            return refused or _error(404, "Not Found")
        number = request.path_params["number"]
        return JSONResponse(repo.pulls[number - 1]) if 0 < number <= len(repo.pulls) else _error(404, "Not Found")

    async def add_labels(self, request: Request) -> Response:
        repo, body, refused = await self._guard(request, write=True)
        if refused is not None or repo is None:
            return refused or _error(404, "Not Found")
        number = request.path_params["number"]
        if not 0 < number <= len(repo.pulls):
            return _error(404, "Not Found")
        names = body.get("labels")
        if not isinstance(names, list) or not all(isinstance(n, str) and 0 < len(n) <= 50 for n in names):
            return _error(422, "Validation Failed", errors=[{"resource": "Label", "field": "labels",
                                                              "code": "invalid"}])  # fmt: skip
        labels = repo.pulls[number - 1]["labels"]
        for name in names:
            if all(label["name"] != name for label in labels) and len(labels) < 100:
                labels.append({"name": name, "color": "ededed", "default": False})
        return JSONResponse(labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake forge speaking the GitHub REST v3 pull request shape.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="fake-forge-token")
    parser.add_argument("--repo", action="append", default=[], help="owner/name a repository it knows (repeatable)")
    args = parser.parse_args(argv)
    server = FakeForgeServer(token=args.token, repos=args.repo)
    try:
        asyncio.run(serve_forever(server, args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
