"""Resource reports: psutil numbers, nvidia-smi parsing, VRAM from a (fake) Ollama's /api/ps."""

from __future__ import annotations

import socket

import pytest

from shared.fakes.ollama_server import FakeOllamaServer
from sidecar.host.resources import ollama_vram_bytes, parse_nvidia_smi, sample_resources

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1024, 8192\n", (1024 * MIB, 8192 * MIB)),
        ("100, 1000\n200, 2000\n", (300 * MIB, 3000 * MIB)),
        ("", None),
        ("[N/A], [N/A]\n", None),
        ("NVIDIA-SMI has failed\n", None),
    ],
)
def test_parse_nvidia_smi(text: str, expected: tuple[int, int] | None) -> None:
    """Used/total MiB lines of every GPU are summed into bytes; output without numbers gives None."""
    assert parse_nvidia_smi(text) == expected


async def test_sample_has_cpu_and_ram() -> None:
    """A sample reports CPU percent and RAM used/total from this machine."""
    report = await sample_resources()
    assert report.type == "resource_report"
    assert 0 <= report.cpu_percent <= 100 * 1024
    assert 0 < report.ram_used_bytes <= report.ram_total_bytes
    assert report.timestamp and report.timestamp > 1_600_000_000_000


async def test_vram_from_ollama_ps() -> None:
    """With an Ollama URL the VRAM its loaded models hold is read from /api/ps."""
    async with FakeOllamaServer() as server:
        assert await ollama_vram_bytes(server.url) == 1_000_000_000


async def test_unreachable_ollama_gives_none() -> None:
    """An Ollama that does not answer gives no VRAM figure instead of an error."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert await ollama_vram_bytes(f"http://127.0.0.1:{port}", timeout_s=2) is None
