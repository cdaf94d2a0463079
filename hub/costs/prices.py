"""USD per million tokens, by model: Claude models from a table, local models free, overrides from settings.

A name matches a table entry exactly or as a prefix followed by ``-``, ``@`` or ``:`` (a dated or tagged variant),
ignoring case and treating ``.`` like ``-``. An unknown Claude model is priced as the reference model (never as
free); any other unknown model is local and costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    input_usd_per_mtok: float
    output_usd_per_mtok: float

    def usd(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_usd_per_mtok + tokens_out * self.output_usd_per_mtok) / 1_000_000


FREE = Price(0.0, 0.0)
CLAUDE_PRICES: dict[str, Price] = {
    "claude-sonnet-4.5": Price(3.0, 15.0),
    "claude-sonnet-4.6": Price(3.0, 15.0),
    "claude-sonnet-4": Price(3.0, 15.0),
    "claude-opus-4.5": Price(5.0, 25.0),
    "claude-opus-4.6": Price(5.0, 25.0),
    "claude-opus-4.1": Price(15.0, 75.0),
    "claude-opus-4": Price(15.0, 75.0),
    "claude-haiku-4.5": Price(1.0, 5.0),
    "claude-3-5-haiku": Price(0.8, 4.0),
}
REFERENCE_MODEL = "claude-sonnet-4.5"
CLAUDE_PROVIDERS = frozenset({"claude", "anthropic"})
_SEPARATORS = ("-", "@", ":")


def _norm(name: str) -> str:
    return name.strip().lower().removeprefix("anthropic/").replace(".", "-")


def _lookup(table: Mapping[str, Price], model: str) -> Price | None:
    wanted, best = _norm(model), None
    for name, price in table.items():
        key = _norm(name)
        if wanted == key:
            return price
        if wanted.startswith(key) and wanted[len(key)] in _SEPARATORS and (best is None or len(key) > best[0]):
            best = (len(key), price)
    return best[1] if best else None


class PriceTable:
    """Prices by model; ``overrides`` (model -> (input, output) USD per million tokens) win over the table."""

    def __init__(self, overrides: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.overrides = {name: Price(*pair) for name, pair in (overrides or {}).items()}

    def price(self, model: str | None, provider: str | None) -> Price:
        if model and (found := _lookup(self.overrides, model)) is not None:
            return found
        claude = (provider or "").lower() in CLAUDE_PROVIDERS or _norm(model or "").startswith("claude")
        if not claude:
            return FREE
        return (_lookup(CLAUDE_PRICES, model) if model else None) or CLAUDE_PRICES[REFERENCE_MODEL]

    def usd(self, model: str | None, provider: str | None, tokens_in: int, tokens_out: int) -> float:
        return self.price(model, provider).usd(tokens_in, tokens_out)
