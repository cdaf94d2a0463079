"""The price table and its name matching."""

from __future__ import annotations

import pytest

from sidecar.agent.cost import PRICES, Price, claude_cost_usd, equivalent_claude_cost_usd, price_for


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("claude-sonnet-4.5", Price(3, 15)),
        ("claude-sonnet-4-5", Price(3, 15)),
        ("claude-sonnet-4-5-20250929", Price(3, 15)),
        ("claude-sonnet-4-5@20250929", Price(3, 15)),
        ("Claude-Opus-4.5", Price(5, 25)),
        ("claude-opus-4-6", Price(5, 25)),
        ("claude-haiku-4-5-20251001", Price(1, 5)),
        ("anthropic/claude-haiku-4.5", Price(1, 5)),
    ],
)
def test_known_models_match_exactly_or_by_prefix(model: str, price: Price) -> None:
    """Dots and dashes are alike, and dated or provider-qualified names take their family's price."""
    assert price_for(model) == price


@pytest.mark.parametrize("model", ["claude", "claude-sonnet-4", "claude-sonnet-4-50", "qwen2.5-coder:7b", ""])
def test_unknown_or_partial_names_have_no_price(model: str) -> None:
    """A prefix must end at a separator: claude-sonnet-4-50 is not claude-sonnet-4-5."""
    assert price_for(model) is None


def test_claude_cost_per_million_tokens() -> None:
    """One million tokens in and out cost the table's two prices added."""
    assert claude_cost_usd("claude-sonnet-4-5", 1_000_000, 1_000_000) == pytest.approx(18.0)
    assert claude_cost_usd("claude-opus-4-6", 2_000, 1_000) == pytest.approx(0.01 + 0.025)
    assert claude_cost_usd("claude-haiku-4.5", 0, 0) == 0.0


def test_unknown_claude_model_is_priced_as_the_reference_model() -> None:
    """A Claude model missing from the table is not free: it gets the Sonnet price."""
    assert claude_cost_usd("claude-mystery-9", 1_000_000, 0) == pytest.approx(3.0)


def test_local_tokens_get_an_equivalent_claude_cost() -> None:
    """Ollama runs cost 0; their savings are priced at Sonnet 4.5."""
    assert equivalent_claude_cost_usd(168, 28) == pytest.approx(168 * 3e-6 + 28 * 15e-6)
    assert set(PRICES) >= {"claude-sonnet-4.5", "claude-opus-4.5", "claude-opus-4.6", "claude-haiku-4.5"}
