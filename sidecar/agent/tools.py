"""Tools the agent loop can call, each confined to one task workspace.

``ToolRegistry.execute(name, arguments)`` never raises: an unknown tool, bad arguments, a sandbox denial, a failing
or hung command all come back as an ``Observation`` the model can read and react to. Paths are resolved with
``resolve_in_workspace`` (which refuses ``../`` and symlink escapes); file I/O then happens in-process, and commands
run through the ``Sandbox``. Descriptions shown to the model live in ``tool_descriptions.json``.
"""

from __future__ import annotations

import errno
import functools
import inspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sidecar.sandbox.base import Sandbox, SandboxViolation, resolve_in_workspace
from sidecar.sandbox.output import cap_text, format_completed

logger = logging.getLogger(__name__)

OUTPUT_CAP_CHARS = 16 * 1024
"""Longest ``Observation.output``; longer output keeps its head and tail around an elision note."""
READ_MAX_FILE_BYTES = 10 * 1024**2
LIST_MAX_ENTRIES = 500
SEARCH_MAX_MATCHES = 100
SEARCH_MAX_LINE_CHARS = 300
SEARCH_TIMEOUT_S = 30.0
SEARCH_SKIP_DIRS = (".git", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache")
SUMMARY_MAX_CHARS = 120
BULKY_ARGS = ("content", "old", "new")
"""Arguments shown by length only in summaries."""


# --- observations --------------------------------------------------------------------------------------------------


class ToolError(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    """Stable snake_case code: unknown_tool, invalid_arguments, sandbox_denied, not_found, timeout, nonzero_exit..."""
    message: str


class Observation(BaseModel):
    """What one tool call produced, as sent back to the model and streamed to the hub."""

    model_config = ConfigDict(frozen=True)

    success: bool
    tool: str
    output: str = ""
    error: ToolError | None = None
    duration_ms: int = 0

    def to_model_text(self) -> str:
        """Compact text for the model's tool message: the output, headed by the error if the call failed."""
        if self.error is None:
            return self.output or "(no output)"
        head = f"ERROR [{self.error.code}]: {self.error.message}"
        return f"{head}\n{self.output}" if self.output else head


class ToolFailure(Exception):
    """Raised inside a tool to end the call as a failed observation."""

    def __init__(self, code: str, message: str, output: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.output = code, message, output


# --- arguments -----------------------------------------------------------------------------------------------------


class ToolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadFileArgs(ToolArgs):
    path: str = Field(min_length=1)
    offset: int = Field(default=1, ge=1)
    limit: int = Field(default=2000, ge=1, le=10_000)


class WriteFileArgs(ToolArgs):
    path: str = Field(min_length=1)
    content: str


class EditFileArgs(ToolArgs):
    path: str = Field(min_length=1)
    old: str = Field(min_length=1)
    new: str


class ListDirectoryArgs(ToolArgs):
    path: str = Field(default=".", min_length=1)


class RunCommandArgs(ToolArgs):
    command: str = Field(min_length=1)
    timeout_s: float = Field(default=30, gt=0, le=300)


class SearchFilesArgs(ToolArgs):
    pattern: str = Field(min_length=1)
    path: str = Field(default=".", min_length=1)


TOOL_ARGS: dict[str, type[ToolArgs]] = {
    "read_file": ReadFileArgs,
    "write_file": WriteFileArgs,
    "edit_file": EditFileArgs,
    "list_directory": ListDirectoryArgs,
    "run_command": RunCommandArgs,
    "search_files": SearchFilesArgs,
}

_SCHEMA_KEYS = ("type", "default", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


@functools.cache
def _descriptions() -> dict[str, Any]:
    return json.loads(Path(__file__).with_name("tool_descriptions.json").read_text(encoding="utf-8"))


def tool_schema(name: str) -> dict[str, Any]:
    """``{name, description, parameters}``: types and limits from the argument model, text from the JSON file."""
    docs, raw = _descriptions()[name], TOOL_ARGS[name].model_json_schema()
    properties = {
        field: {key: prop[key] for key in _SCHEMA_KEYS if key in prop} | {"description": docs["parameters"][field]}
        for field, prop in raw["properties"].items()
    }
    parameters = {"type": "object", "properties": properties, "required": raw.get("required", [])}
    return {"name": name, "description": docs["description"], "parameters": parameters}


_ARG_PROBLEMS = {"missing": "missing required argument '{field}'", "extra_forbidden": "unknown argument '{field}'"}


def _describe_invalid(name: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"]) or "arguments"
        problems.append(_ARG_PROBLEMS.get(err["type"], "'{field}': {msg}").format(field=field, msg=err["msg"]))
    accepted = ", ".join(TOOL_ARGS[name].model_fields)
    return f"invalid arguments for {name}: {'; '.join(problems)} (accepted: {accepted})"


def _decode_arguments(name: str, arguments: Mapping[str, Any] | str | None) -> Mapping[str, Any]:
    """Arguments arrive as an object (Ollama's /api/chat) or as a JSON string (OpenAI-style endpoints)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments.strip() or "{}")
        except json.JSONDecodeError as exc:
            raise ToolFailure("invalid_arguments", f"arguments for {name} are not valid JSON: {exc}") from exc
    if not isinstance(arguments, Mapping | None):
        raise ToolFailure("invalid_arguments", f"arguments for {name} must be a JSON object")
    return arguments or {}


_OS_ERROR_CODES = {
    FileNotFoundError: "not_found",
    IsADirectoryError: "is_a_directory",
    NotADirectoryError: "not_a_directory",
    PermissionError: "permission_denied",
}


def _os_failure(exc: OSError, workspace: Path) -> ToolError:
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink swapped in after the path was resolved
        return ToolError(code="sandbox_denied", message="refusing to follow a symbolic link")
    where = Path(os.fsdecode(exc.filename)) if exc.filename is not None else Path("?")
    where = where.relative_to(workspace) if where.is_relative_to(workspace) else where
    code = _OS_ERROR_CODES.get(type(exc), "io_error")
    return ToolError(code=code, message=f"{(exc.strerror or str(exc)).lower()}: {where}")


# --- the registry --------------------------------------------------------------------------------------------------


class ToolRegistry:
    """The agent's tools for one workspace; every path and command stays inside it."""

    def __init__(self, workspace: Path, sandbox: Sandbox) -> None:
        self.workspace = Path(workspace).resolve()
        self.sandbox = sandbox
        self._schemas = [tool_schema(name) for name in TOOL_ARGS]
        self._handlers: dict[str, Callable[[Any], str | Awaitable[str]]] = {
            name: getattr(self, f"_{name}") for name in TOOL_ARGS
        }

    def __repr__(self) -> str:
        return f"<ToolRegistry workspace={str(self.workspace)!r} level={getattr(self.sandbox, 'level', '?')}>"

    @property
    def names(self) -> list[str]:
        return list(TOOL_ARGS)

    def schemas_ollama(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": dict(schema)} for schema in self._schemas]

    def schemas_anthropic(self) -> list[dict[str, Any]]:
        return [
            {"name": s["name"], "description": s["description"], "input_schema": s["parameters"]} for s in self._schemas
        ]

    async def execute(self, name: str, arguments: Mapping[str, Any] | str | None) -> Observation:
        """Run one tool call; every failure becomes an unsuccessful ``Observation``, nothing is raised."""
        started = time.monotonic()
        output, error = "", None
        try:
            if name not in self._handlers:
                raise ToolFailure("unknown_tool", f"unknown tool {name!r}; available tools: {', '.join(self.names)}")
            args = TOOL_ARGS[name].model_validate(_decode_arguments(name, arguments))
            result = self._handlers[name](args)
            output = await result if inspect.isawaitable(result) else result
        except ToolFailure as exc:
            output, error = exc.output, ToolError(code=exc.code, message=exc.message)
        except ValidationError as exc:
            error = ToolError(code="invalid_arguments", message=_describe_invalid(name, exc))
        except SandboxViolation as exc:
            error = ToolError(code="sandbox_denied", message=str(exc) or "path is outside the workspace")
        except OSError as exc:
            error = _os_failure(exc, self.workspace)
        except Exception as exc:
            logger.exception("tool %s crashed", name)
            error = ToolError(code="internal_error", message=f"{type(exc).__name__}: {exc}")
        return Observation(
            success=error is None,
            tool=name,
            output=cap_text(output, OUTPUT_CAP_CHARS),
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    def _resolve(self, rel: str) -> Path:
        return resolve_in_workspace(self.workspace, rel)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.workspace).as_posix() if path != self.workspace else "."

    def _give_to_owner(self, path: Path) -> None:
        """Hand a file we created to the workspace owner so sandboxed commands (run as that uid) can write it."""
        if os.geteuid() != 0:
            return  # not root: the sandbox runs as our own uid, which already owns the file
        owner = os.stat(self.workspace)
        mine = os.stat(path, follow_symlinks=False)
        if (mine.st_uid, mine.st_gid) != (owner.st_uid, owner.st_gid):
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)

    def _read_text(self, path: Path) -> str:
        if path.is_dir():
            raise ToolFailure("is_a_directory", f"{self._rel(path)} is a directory; use list_directory")
        if path.stat().st_size > READ_MAX_FILE_BYTES:
            raise ToolFailure("file_too_large", f"{self._rel(path)} is larger than {READ_MAX_FILE_BYTES} bytes")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            data = f.read()
        if b"\0" in data[:8192]:
            raise ToolFailure("binary_file", f"{self._rel(path)} looks binary (contains NUL bytes)")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ToolFailure("not_utf8", f"{self._rel(path)} is not UTF-8 text ({exc.reason})") from exc

    def _write_text(self, path: Path, text: str) -> int:
        missing = [p for p in [path.parent, *path.parent.parents] if not p.exists() and self.workspace in p.parents]
        for directory in reversed(missing):
            directory.mkdir()
            self._give_to_owner(directory)
        data = text.encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self._give_to_owner(path)
        return len(data)

    def _read_file(self, args: ReadFileArgs) -> str:
        path = self._resolve(args.path)
        lines = self._read_text(path).split("\n")
        if lines[-1] == "":
            lines.pop()
        total, rel = len(lines), self._rel(path)
        if total == 0:
            return f"({rel} is empty)"
        if args.offset > total:
            raise ToolFailure("out_of_range", f"offset {args.offset} is past the end of {rel} ({total} lines)")
        shown: list[str] = []
        used, end = 0, min(total, args.offset - 1 + args.limit)
        for number in range(args.offset, end + 1):
            line = f"{number:>6}\t{lines[number - 1]}"
            if shown and used + len(line) > OUTPUT_CAP_CHARS - 200:
                break
            shown.append(line)
            used += len(line) + 1
        last = args.offset + len(shown) - 1
        if last < total:
            shown.append(f"[lines {args.offset}-{last} of {total}; read_file with offset={last + 1} to continue]")
        return "\n".join(shown)

    def _write_file(self, args: WriteFileArgs) -> str:
        path = self._resolve(args.path)
        created = not path.exists()
        size = self._write_text(path, args.content)
        return f"{'created' if created else 'overwrote'} {self._rel(path)} ({size} bytes)"

    def _edit_file(self, args: EditFileArgs) -> str:
        path = self._resolve(args.path)
        text, rel = self._read_text(path), self._rel(path)
        count = text.count(args.old)
        if count == 0:
            raise ToolFailure("no_match", f"old text not found in {rel} (0 matches); copy it exactly, with indentation")
        if count > 1:
            raise ToolFailure(
                "multiple_matches", f"old text matches {count} times in {rel}; add surrounding lines so it matches once"
            )
        at = text.index(args.old)
        self._write_text(path, text[:at] + args.new + text[at + len(args.old) :])
        line = text.count("\n", 0, at) + 1
        return f"edited {rel}: replaced {args.old.count(chr(10)) + 1} line(s) at line {line}"

    def _list_directory(self, args: ListDirectoryArgs) -> str:
        path = self._resolve(args.path)
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        lines = [f"{self._rel(path)}/ ({len(entries)} entries)"]
        for entry in entries[:LIST_MAX_ENTRIES]:
            if entry.is_symlink():
                lines.append(f"{entry.name}@ -> {os.readlink(entry.path)}")
            else:
                lines.append(f"{entry.name}/" if entry.is_dir() else f"{entry.name}  {entry.stat().st_size} bytes")
        if len(entries) > LIST_MAX_ENTRIES:
            lines.append(f"[{len(entries) - LIST_MAX_ENTRIES} more entries not shown]")
        return "\n".join(lines)

    async def _run_command(self, args: RunCommandArgs) -> str:
        done = await self.sandbox.run(
            ["/bin/sh", "-c", args.command], self.workspace, cwd=self.workspace, timeout_s=args.timeout_s
        )
        text = format_completed(done)
        if done.timed_out:
            raise ToolFailure("timeout", f"command timed out after {args.timeout_s:g} s and was killed", text)
        if done.returncode != 0:
            raise ToolFailure("nonzero_exit", f"command failed with exit code {done.returncode}", text)
        return text

    async def _search_files(self, args: SearchFilesArgs) -> str:
        target = self._resolve(args.path)
        if not target.exists():
            raise ToolFailure("not_found", f"no such file or directory: {args.path}")
        rel = self._rel(target)
        skip = [f"--exclude-dir={name}" for name in SEARCH_SKIP_DIRS]
        argv = ["grep", "-rnHIE", "--color=never", *skip, "-e", args.pattern, "--", rel]
        done = await self.sandbox.run(argv, self.workspace, cwd=self.workspace, timeout_s=SEARCH_TIMEOUT_S)
        if done.timed_out:
            raise ToolFailure("timeout", f"search timed out after {SEARCH_TIMEOUT_S:g} s; narrow the path")
        matches = done.stdout.splitlines()
        if not matches:
            if done.returncode == 1:
                return f"no matches for {args.pattern!r} in {rel}"
            raise ToolFailure("search_failed", f"grep failed: {done.stderr.strip() or done.returncode}")
        shown = [m.removeprefix("./")[:SEARCH_MAX_LINE_CHARS] for m in matches[:SEARCH_MAX_MATCHES]]
        header = f"{'more than ' if done.truncated else ''}{len(matches)} matching lines for {args.pattern!r} in {rel}"
        if len(matches) > len(shown) or done.truncated:
            header += f" (first {len(shown)} shown; narrow the pattern or path)"
        return "\n".join([header, *shown])


# --- live-stream summaries -----------------------------------------------------------------------------------------


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize_args(name: str, args: Mapping[str, Any] | Any) -> str:
    """One line (<= 120 chars) naming the tool and its arguments; bulky text is replaced by its length."""
    if not isinstance(args, Mapping):
        return _shorten(f"{name} {args!r}", SUMMARY_MAX_CHARS)
    parts = [name]
    for key, value in args.items():
        if not isinstance(value, str):
            parts.append(f"{key}={json.dumps(value, ensure_ascii=False, default=str)}")
        elif key in BULKY_ARGS:
            parts.append(f"{key}=<{len(value)} chars>")
        else:
            first = value.strip().partition("\n")[0] + (" …" if "\n" in value.strip() else "")
            parts.append(f"{key}={json.dumps(first, ensure_ascii=False) if ' ' in first or not first else first}")
    return _shorten(" ".join(parts), SUMMARY_MAX_CHARS)


def summarize_result(obs: Observation) -> str:
    """One line (<= 120 chars): ``OK tool: first output line`` or ``ERR tool [code]: message``."""
    if obs.error is not None:
        text = f"ERR {obs.tool} [{obs.error.code}]: {obs.error.message}"
    else:
        first = next((line for line in obs.output.splitlines() if line.strip()), "(no output)")
        text = f"OK {obs.tool}: {first.strip()}"
    return _shorten(" ".join(text.split()), SUMMARY_MAX_CHARS)
