"""The forge seam: opening and finding pull requests on the service that hosts a repository.

:class:`Forge` is the small Protocol publication needs; :class:`GitHubForge` speaks GitHub's REST v3 (and GitHub
Enterprise, or the fake in :mod:`shared.fakes.forge_server`, through ``base_url``). Gitea and GitLab can follow
behind the same two methods. Every failure becomes a :class:`ForgeError` with a message a person can act on; the
token never appears in one, nor in a log line or a repr.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote

import httpx

logger = logging.getLogger(__name__)

GITHUB_API = "https://api.github.com"
API_VERSION = "2022-11-28"
ALREADY_EXISTS = "A pull request already exists"
MAX_MESSAGE_CHARS = 300
_USER_INFO = re.compile(r"(?<=://)[^/@\s]+@")


class ForgeError(Exception):
    """The forge refused or could not be reached; ``str()`` says what happened and what to check."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Forge(Protocol):
    """What publication needs from a forge. ``repo`` is ``owner/name``; ``head`` a branch of that repository."""

    async def open_pull_request(
        self, repo: str, head: str, base: str, title: str, body: str, *, labels: Sequence[str] = ()
    ) -> str:
        """Open a pull request of ``head`` into ``base`` and return its web URL; when one is open already for the
        same head and base, return that one's URL instead. Raises :class:`ForgeError`."""
        ...

    async def find_pull_request(self, repo: str, head: str, base: str | None = None) -> str | None:
        """The web URL of the open pull request of ``head`` (into ``base``, when given), or None."""
        ...


def _messages(response: httpx.Response) -> str:
    """GitHub's ``message`` and each ``errors[].message`` of an error response, cut short."""
    try:
        data: Any = response.json()
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    parts = [data.get("message")] + [e.get("message") for e in data.get("errors") or [] if isinstance(e, dict)]
    return "; ".join(p for p in parts if isinstance(p, str) and p)[:MAX_MESSAGE_CHARS]


def _json(response: httpx.Response, repo: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ForgeError(f"the forge's answer on {repo} is not JSON ({response.status_code})") from exc


class GitHubForge:
    """GitHub REST v3 over httpx: ``GitHubForge(token, base_url="https://github.example/api/v3")``."""

    def __init__(self, token: str, *, base_url: str = GITHUB_API, timeout_s: float = 20.0) -> None:
        if not token:
            raise ValueError("a forge token is needed")
        self._token = token
        self.base_url = base_url.rstrip("/")
        self.shown_url = _USER_INFO.sub("", self.base_url)
        """The base URL as messages show it: without any ``user:password@``."""
        self.timeout_s = timeout_s
        self.n_requests = 0

    def __repr__(self) -> str:  # never the token
        return f"<GitHubForge base_url={self.shown_url} requests={self.n_requests}>"

    async def _request(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None,
                       repo: str) -> httpx.Response:  # fmt: skip
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": API_VERSION, "User-Agent": "agentcom-sidecar"}  # fmt: skip
        self.n_requests += 1
        try:
            async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self.timeout_s) as client:
                response = await client.request(method, path, json=json, params=params)
        except httpx.TimeoutException as exc:
            raise ForgeError(f"the forge at {self.shown_url} did not answer within {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise ForgeError(f"cannot reach the forge at {self.shown_url}: {type(exc).__name__}") from exc
        if response.status_code < 400:
            return response
        detail = _messages(response)
        said = f" (the forge said: {detail})" if detail else ""
        status = response.status_code
        if status == 401:
            message = f"the forge refused the token (401 Unauthorized): check the token for {self.shown_url}{said}"
        elif status == 403:
            message = f"the token may not do this on {repo} (403 Forbidden): check its scopes or rate limit{said}"
        elif status == 404:
            message = f"repository {repo} not found on {self.shown_url} (404), or the token cannot see it{said}"
        elif status == 422:
            message = f"the forge refused the request on {repo} (422 Unprocessable){said}"
        else:
            message = f"the forge answered {status} on {method} {path}{said}"
        raise ForgeError(message, status)

    @staticmethod
    def _split(repo: str) -> str:
        owner, _, name = repo.partition("/")
        if not owner or not name or "/" in name:
            raise ForgeError(f"not an owner/name repository: {repo!r}")
        return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    async def open_pull_request(
        self, repo: str, head: str, base: str, title: str, body: str, *, labels: Sequence[str] = ()
    ) -> str:
        path = self._split(repo)
        payload = {"title": title, "head": head, "base": base, "body": body}
        try:
            pull = _pull(_json(await self._request("POST", f"{path}/pulls", json=payload, repo=repo), repo), repo)
            logger.info("pull request of %s into %s opened on %s: %s", head, base, repo, pull[0])
        except ForgeError as exc:
            if exc.status != 422 or ALREADY_EXISTS not in str(exc):
                raise
            found = await self._find(repo, head, base)
            if found is None:
                raise ForgeError(f"the forge says a pull request of {head} exists on {repo}, but none is open") from exc
            pull = found
            logger.info("pull request of %s on %s exists already: %s", head, repo, pull[0])
        if labels:  # on an existing one too: a retried task that now needs review gets its label
            await self._request("POST", f"{path}/issues/{pull[1]}/labels", json={"labels": list(labels)}, repo=repo)
        return pull[0]

    async def find_pull_request(self, repo: str, head: str, base: str | None = None) -> str | None:
        found = await self._find(repo, head, base)
        return None if found is None else found[0]

    async def _find(self, repo: str, head: str, base: str | None) -> tuple[str, int] | None:
        """``(html_url, number)`` of the newest open pull request of ``head``, or None."""
        path = self._split(repo)
        owner = repo.partition("/")[0]
        params = {"state": "open", "head": head if ":" in head else f"{owner}:{head}", "per_page": "10"}
        if base is not None:
            params["base"] = base
        pulls = _json(await self._request("GET", f"{path}/pulls", params=params, repo=repo), repo)
        if not isinstance(pulls, list):
            raise ForgeError(f"the forge's pull request listing on {repo} is not a list")
        ref = head.rpartition(":")[2]
        mine = [p for p in pulls if isinstance(p, dict) and isinstance(p.get("head"), dict)
                and p["head"].get("ref") == ref]  # fmt: skip
        return _pull(mine[0], repo) if mine else None


def _pull(data: Any, repo: str) -> tuple[str, int]:
    """``(html_url, number)`` of a pull request object of the forge."""
    url, number = (data.get("html_url"), data.get("number")) if isinstance(data, dict) else (None, None)
    if not isinstance(url, str) or not isinstance(number, int) or isinstance(number, bool):
        raise ForgeError(f"the forge's pull request on {repo} has no html_url and number")
    return url, number
