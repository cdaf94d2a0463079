"""Backups of the SQLite database: online (the hub keeps serving), checked, rotated, and restored offline.

A backup is SQLite's online backup of a consistent snapshot (WAL readers never block the writer) into
``DATA_DIR/backups/agentcom-<UTC time>.db.part``; it is checked (``PRAGMA integrity_check``) and only then renamed to
``.db``, so a file without ``.part`` is always a whole, sound database. The newest ``keep`` are kept. A restore runs
while no hub holds the data dir: it checks the backup, moves the current database (and its WAL) aside as
``agentcom.db.before-restore-<time>``, and copies the backup in its place.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hub.store import StoreError

DIR_NAME = "backups"
PREFIX = "agentcom-"
SUFFIX = ".db"


@dataclass(frozen=True)
class BackupInfo:
    path: str
    bytes: int
    took_ms: int
    created_at: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def backups(data_dir: Path) -> list[Path]:
    """The finished backups in ``data_dir``, oldest first."""
    folder = data_dir / DIR_NAME
    return sorted(folder.glob(f"{PREFIX}*{SUFFIX}")) if folder.is_dir() else []


def check(path: Path, pragma: str = "integrity_check") -> str | None:
    """None when ``path`` is a sound SQLite database, else what is wrong with it (``quick_check`` for a faster
    look that skips the index contents)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = conn.execute(f"PRAGMA {'quick_check' if pragma == 'quick_check' else 'integrity_check'}").fetchall()
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
    return None if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:5])


def refuse_if_damaged(db_path: Path, data_dir: Path) -> None:
    """StoreError naming the newest backup and how to restore it, if the database at ``db_path`` is damaged. A file
    that is not SQLite at all is left to the store's own open, which says so."""
    with db_path.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            return
    problem = check(db_path, "quick_check")
    if problem is None:
        return
    found = backups(data_dir)
    newest = found[-1] if found else None
    fix = (
        f"restore the newest backup ({newest}) with: agentcom hub restore --data-dir {data_dir}"
        if newest
        else f"there is no backup in {data_dir / DIR_NAME}; move the file aside to start empty"
    )
    raise StoreError(f"the database {db_path} is damaged ({problem[:300]}); nothing was changed. To recover, {fix}")


def _copy(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=4096)  # in steps: the writer is only held off for a step at a time
    finally:
        dst.close()
        src.close()


def make_backup(db_path: Path, data_dir: Path, keep: int = 3) -> BackupInfo:
    """Back up ``db_path`` now (blocking: run it in a thread); StoreError if the copy is not sound."""
    started = time.monotonic()
    folder = data_dir / DIR_NAME
    folder.mkdir(mode=0o700, exist_ok=True)
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"
    final = folder / f"{PREFIX}{stamp}{SUFFIX}"
    part = final.with_name(final.name + ".part")
    try:
        _copy(db_path, part)
        problem = check(part)
        if problem is not None:
            raise StoreError(f"the backup {part} is not sound ({problem}); it was removed, the last good ones kept")
        part.chmod(0o600)
        part.rename(final)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"the backup into {folder} failed: {exc}") from exc
    finally:
        part.unlink(missing_ok=True)
    for old in backups(data_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    took = int((time.monotonic() - started) * 1000)
    return BackupInfo(str(final), final.stat().st_size, took, int(now * 1000))


async def backup(db_path: Path, data_dir: Path, keep: int = 3) -> BackupInfo:
    """:func:`make_backup` on a worker thread, so the hub keeps serving meanwhile."""
    return await asyncio.to_thread(make_backup, db_path, data_dir, keep)


def restore(data_dir: Path, source: Path | None = None) -> tuple[Path, Path | None]:
    """Put ``source`` (default: the newest backup) in place of the database of ``data_dir``; the hub must not be
    running (the caller holds the data-dir lock). Returns the backup used and where the old database went."""
    found = backups(data_dir)
    source = source or (found[-1] if found else None)
    if source is None:
        raise StoreError(f"there is no backup in {data_dir / DIR_NAME} to restore")
    problem = check(source)
    if problem is not None:
        raise StoreError(f"the backup {source} is not a sound database ({problem}); nothing was changed")
    db = data_dir / "agentcom.db"
    moved: Path | None = None
    if db.exists():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        moved = db.with_name(f"{db.name}.before-restore-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            current = db.with_name(db.name + suffix)
            if current.exists():
                current.rename(moved.with_name(moved.name + suffix))
    shutil.copyfile(source, db)
    db.chmod(0o600)
    return source, moved
