"""The hub's web dashboard: Jinja2 templates and hand-written static JS/CSS, served by ``hub.dashboard_socket``."""

from __future__ import annotations

from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

__all__ = ["STATIC_DIR", "TEMPLATE_DIR"]
