"""The WAL sync helper process (see hub/store/wal_sync.py): run as a script, it imports nothing but os and sys."""

import os
import sys


def main() -> None:
    sync = getattr(os, "fdatasync", os.fsync)  # fdatasync is Linux's; elsewhere fsync, as SQLite itself does
    try:
        fd = os.open(sys.argv[1], os.O_RDONLY)
    except OSError:
        os.write(1, b"x")
        return
    os.write(1, b"r")
    while os.read(0, 1):
        try:
            sync(fd)
        except OSError as exc:
            os.write(1, b"n" if exc.errno in (28, 122) else b"e")  # ENOSPC, EDQUOT: the disk (or quota) is full
            continue
        os.write(1, b"k")


if __name__ == "__main__":
    main()
