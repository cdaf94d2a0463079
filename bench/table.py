"""The two-column table the small benchmarks print: a case and its value."""

from __future__ import annotations


def print_rows(rows: list[tuple[str, str]]) -> None:
    """``case | value`` rows under a header, the case column as wide as its longest entry."""
    width = max(len(r[0]) for r in rows)
    print(f"{'case'.ljust(width)} | value")
    print(f"{'-' * width}-+-------")
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")
