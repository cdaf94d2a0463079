"""What a model run cost, in USD, from a per-model price table (USD per million tokens).

Names are matched exactly or by prefix, ignoring case and treating ``.`` and ``-`` alike, so ``claude-sonnet-4-5``,
``claude-sonnet-4.5-20250929`` and ``claude-sonnet-4-5@20250929`` all get the Sonnet 4.5 price. Local (Ollama)
models cost nothing; for them :func:`equivalent_claude_cost_usd` says what the same tokens would have cost on the
reference Claude model, which the dashboard reports as savings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    input_usd_per_mtok: float
    output_usd_per_mtok: float

    def cost_usd(self, tokens_in: int, tokens_out: int) -> float:
        """The price of ``tokens_in`` prompt and ``tokens_out`` completion tokens."""
        return (tokens_in * self.input_usd_per_mtok + tokens_out * self.output_usd_per_mtok) / 1_000_000


PRICES: dict[str, Price] = {
    "claude-sonnet-4.5": Price(3.0, 15.0),
    "claude-sonnet-4.6": Price(3.0, 15.0),  # launched at the Sonnet 4.5 price; the SDK marks 4.5 deprecated
    "claude-opus-4.5": Price(5.0, 25.0),
    "claude-opus-4.6": Price(5.0, 25.0),
    "claude-haiku-4.5": Price(1.0, 5.0),
}
REFERENCE_MODEL = "claude-sonnet-4.5"
"""Prices a local model's tokens for ``equivalent_claude_cost_usd``, and an unknown Claude model's tokens."""
_SUFFIX_SEPARATORS = ("-", "@", ":")


def _normalized(name: str) -> str:
    return name.strip().lower().removeprefix("anthropic/").replace(".", "-")


def price_for(model: str) -> Price | None:
    """The price of ``model``: exact name first, then the longest table entry that is a prefix of it."""
    wanted = _normalized(model)
    best: tuple[int, Price] | None = None
    for name, price in PRICES.items():
        key = _normalized(name)
        if wanted == key:
            return price
        if wanted.startswith(key) and wanted[len(key)] in _SUFFIX_SEPARATORS and (best is None or len(key) > best[0]):
            best = (len(key), price)
    return best[1] if best else None


def claude_cost_usd(model: str, tokens_in: int, tokens_out: int) -> float:
    """Cost of a Claude run; a model missing from the table is priced as the reference model (and logged)."""
    price = price_for(model)
    if price is None:
        logger.warning("no price for model %r; pricing it as %s", model, REFERENCE_MODEL)
        price = PRICES[REFERENCE_MODEL]
    return price.cost_usd(tokens_in, tokens_out)


def equivalent_claude_cost_usd(tokens_in: int, tokens_out: int) -> float:
    """What the same tokens would have cost on the reference Claude model."""
    return PRICES[REFERENCE_MODEL].cost_usd(tokens_in, tokens_out)
