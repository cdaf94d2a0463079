"""Output capping and rendering: long output keeps both ends and says how much was cut."""

from __future__ import annotations

from sidecar.sandbox.output import cap_text


def test_cap_text_keeps_head_and_tail() -> None:
    """cap_text returns short text unchanged and long text within the limit with both ends kept."""
    assert cap_text("short", 100) == "short"
    capped = cap_text("a" * 1000 + "b" * 1000, 500)
    assert len(capped) <= 500 and capped.startswith("a") and capped.endswith("b") and "elided" in capped
