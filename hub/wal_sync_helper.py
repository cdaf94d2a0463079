"""The WAL sync helper process (see hub/wal_sync.py): run as a script, it imports nothing but os and sys."""

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
        except OSError:
            os.write(1, b"e")
            continue
        os.write(1, b"k")


if __name__ == "__main__":
    main()
