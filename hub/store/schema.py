"""The SQLite schema: the numbered migration files in hub/store/migrations/ and applying those a database lacks
(its version is ``PRAGMA user_version``), all in one transaction."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

from hub.store import StoreError


def migrations() -> list[tuple[int, str]]:
    """Every migration, as (number, script), in order."""
    files = sorted(
        (p for p in resources.files("hub.store").joinpath("migrations").iterdir() if p.name.endswith(".sql")),
        key=lambda p: p.name,
    )
    return [(int(p.name.split("_", 1)[0]), p.read_text()) for p in files]


def pending(path: Path, version: int) -> tuple[list[tuple[int, str]], int]:
    """The migrations a database at ``version`` lacks, and the version it will then be at; StoreError if the database
    is newer than this hub."""
    every = migrations()
    latest = every[-1][0] if every else 0
    if version > latest:
        raise StoreError(
            f"the database {path} was written by a newer hub (schema version {version}, this "
            f"hub knows up to {latest}). Run that newer hub, or restore a backup made by this one."
        )
    return [(number, sql) for number, sql in every if number > version], latest


def apply(conn: sqlite3.Connection, path: Path, todo: list[tuple[int, str]], version: int, latest: int) -> None:
    """Runs on the connection's thread: the transaction begins and ends within this one call, so a start cancelled
    meanwhile cannot leave it half done (it completes or rolls back, then the store closes)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for number, sql in todo:
            try:
                for statement in filter(None, (s.strip() for s in sql.split(";"))):
                    conn.execute(statement)
            except sqlite3.Error as exc:
                raise StoreError(
                    f"upgrading the database {path} from schema version {version} failed in migration "
                    f"{number} ({exc}); nothing was changed, it is still at version {version}. The file does not "
                    f"match that version: restore it from a backup, or move it aside (mv {path} "
                    f"{path}.old) to start with an empty database."
                ) from exc
        conn.execute(f"PRAGMA user_version={latest}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
