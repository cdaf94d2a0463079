"""A registered repository: the body of ``POST /api/repos`` and the stored record (kind ``repo``)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError, to_json

from shared import jsonsafe
from shared.fields import NoControl
from shared.repos import GitRef, GitUrl, ReviewPolicy

MAX_REPOS = 1000
CHECKOUT_BYTES = 32 * 1024
"""Most bytes the repository adds to each ``task_assign`` (URL, test command, review policy): well within the slack
the submit check leaves for it (hub/task_submit.py), so no task becomes unsendable because of its repository."""
SETTINGS_BYTES = 64 * 1024
"""Most bytes of a repository's free-form ``settings`` (1,000 repositories stay small in memory)."""
RepoName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
CREDENTIALS_DETAIL = (
    "the URL carries a credential; give the sidecars their credentials (ssh keys, a credential helper) instead"
)
_REF = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]+(?<!\.lock)(?<![/.])$")


def credentials_in(url: str) -> bool:
    """True when ``url`` carries a password or token (``https://user:pw@host``, ``https://token@host``)."""
    if "://" not in url:  # a local path, or ssh in scp form (``git@host:path``): a password sits before the @
        return not url.startswith(("/", ".")) and "@" in url and ":" in url.split("@", 1)[0]
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return False
    if parts.password is not None:
        return True
    # A bare user over http(s) is how tokens are passed (https://<token>@github.com); over ssh it is a login.
    return parts.username is not None and parts.scheme in ("http", "https")


def normalised_url(url: str) -> str:
    """The form two URLs of one repository share (a task may name its repository by URL)."""
    url = url.strip().rstrip("/")
    return url[:-4] if url.endswith(".git") else url


class RepoSpec(BaseModel):
    """One repository of the registry. Unknown fields are refused (a typo would otherwise be lost silently)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: RepoName
    url: GitUrl
    """A local path, ``file://``, ssh (``ssh://`` or ``git@host:path``) or https URL; never with a credential."""
    default_branch: GitRef = "main"
    priority: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] = 100
    """Lower first: the top-priority repository is the one tasks without a repository inherit."""
    test_command: Annotated[str, Field(max_length=4096)] | None = None
    review: ReviewPolicy = ReviewPolicy()
    publish: Literal["none", "push", "pull_request"] = "pull_request"
    forge: Literal["github", "none"] = "none"
    forge_repo: Annotated[str, Field(max_length=256, pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")] | None = None
    settings: jsonsafe.SafeJson = Field(default_factory=dict)
    """Free-form per-repository settings (within the JSON safety limits)."""

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, v: str) -> str:
        v = v.strip()
        if credentials_in(v):
            raise PydanticCustomError("credentials_in_url", CREDENTIALS_DETAIL)
        if v.startswith("-"):
            raise PydanticCustomError("invalid_value", "a URL may not start with '-'")
        return v

    @field_validator("default_branch")
    @classmethod
    def _branch_name(cls, v: str) -> str:
        if not _REF.match(v):
            raise PydanticCustomError("invalid_value", "not a valid branch name")
        return v

    @field_validator("settings")
    @classmethod
    def _settings_size(cls, v: dict[str, Any]) -> dict[str, Any]:
        size = len(to_json(v))
        if size > SETTINGS_BYTES:
            raise PydanticCustomError(
                "too_large", "{size} bytes, over {limit}", {"size": size, "limit": SETTINGS_BYTES}
            )
        return v

    @model_validator(mode="after")
    def _checkout_size(self) -> RepoSpec:
        size = len(self.url) + len(self.test_command or "") + len(self.review.model_dump_json())
        if size > CHECKOUT_BYTES:
            raise PydanticCustomError(
                "too_large",
                "url, test_command and review take {size} bytes in every task_assign, over {limit}",
                {"size": size, "limit": CHECKOUT_BYTES},
            )
        return self


class RepoPatch(BaseModel):
    """Body of ``PATCH /api/repos/{name}``: any field of :class:`RepoSpec` but the name."""

    model_config = ConfigDict(extra="forbid", strict=True)

    url: GitUrl | None = None
    default_branch: GitRef | None = None
    priority: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] | None = None
    test_command: Annotated[str, Field(max_length=4096)] | None = None
    review: ReviewPolicy | None = None
    publish: Literal["none", "push", "pull_request"] | None = None
    forge: Literal["github", "none"] | None = None
    forge_repo: Annotated[str, Field(max_length=256)] | None = None
    settings: jsonsafe.SafeJson | None = None

    def applied_to(self, spec: RepoSpec) -> dict[str, Any]:
        """The fields of ``spec`` with this patch applied (validated again as a whole by the caller)."""
        return {**spec.model_dump(), **self.model_dump(exclude_unset=True)}


__all__ = ["MAX_REPOS", "NoControl", "RepoPatch", "RepoSpec", "credentials_in", "normalised_url"]
