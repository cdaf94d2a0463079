"""Counters of the sockets the hub gave up on, kept by the fleet for every agent and dashboard socket (hub/connection.py
counts into them); apart from the sockets so that the hub's core imports nothing of the web stack."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SocketCounters:
    """Sockets the hub gave up on, by cause (the hub's, for every agent and dashboard socket)."""

    n_dropped_full: int = 0
    """Dropped: more than ``send_buffer_bytes`` waiting to be sent."""
    n_dropped_slow: int = 0
    """Dropped: one write not taken by the peer within ``send_timeout_s``."""
    n_identify_timeouts: int = 0
    """Closed: no valid ``identify`` within ``identify_timeout_s`` of the handshake."""
    n_close_aborted: int = 0
    """A close handshake not finished within ``close_timeout_s``; the connection was aborted."""
