"""What the store makes of a failure: which errors mean a full disk, which values SQLite cannot store, and what to
tell an operator about a database that will not open."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL: the database or its WAL could not grow (SQLite rolls the statement back; nothing is half done)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF == sqlite3.SQLITE_FULL


def open_error(path: Path, exc: sqlite3.Error) -> str:
    """What to tell an operator about a database that cannot be opened: the cause and the fix."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        fix = (
            f"The file is damaged or is not an AgentCom database; it was left unchanged. Restore it from a backup, "
            f"or move it aside (mv {path} {path}.broken) to start with an empty database."
        )
    elif code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
        fix = (
            f"Make {path.parent} and the files in it (agentcom.db, agentcom.db-wal, agentcom.db-shm) readable "
            f"and writable by this user, or pass --data-dir naming a directory that is."
        )
    elif code == sqlite3.SQLITE_FULL:
        fix = f"The disk holding {path.parent} is full: free some space and start again."
    elif code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        fix = "Another process holds the database locked (a sqlite3 shell, a backup): end it and start again."
    else:
        fix = "Check the file and its directory, or restore the database from a backup."
    return f"cannot open the database {path} ({exc}). {fix}"


def unknown_role(path: Path, role: object, known_roles: Iterable[str]) -> str:
    """What to tell an operator about a stored token whose role this hub does not know: the row and the fix."""
    roles = ", ".join(f"'{r}'" for r in known_roles)
    return (
        f"the tokens table of {path} holds a token this hub cannot read ({str(role)[:64]!r} is not a valid "
        f"Role). Remove or correct that row, e.g. sqlite3 {path} "
        f'"DELETE FROM tokens WHERE role NOT IN ({roles})", then start again.'
    )


def table(sql: str) -> str:
    match = re.search(r"\b(?:INTO|FROM|UPDATE)\s+(\w+)", sql)
    return match.group(1) if match else "?"


def unstorable_value(value: Any) -> str | None:
    if value is None or isinstance(value, bytes | bytearray | memoryview):
        return None
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            return f"a string holds {exc.reason} at index {exc.start}"
        return None
    if isinstance(value, int):
        return None if -(2**63) <= value < 2**63 else "an integer is past SQLite's 64-bit range"
    if isinstance(value, float):
        return None if value == value else "a NaN (SQLite would store NULL)"
    return f"a {type(value).__name__} is not storable"
