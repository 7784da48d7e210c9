"""How the library shows numbers and names, for every face alike (cards, tables, the tear sheet, the CLI):
12.35%, 1,234.57, 1,234 trades, n/a; "Stop-loss (%)"; "Sharpe ratio (out of sample)"."""

from __future__ import annotations

import math

import pandas as pd

from ..data import Market
from ..data.quality import trades_on_flagged
from ..metrics import DEFINITIONS, LABELS
from ..params import TABLE, Param
from ..rules import number_titles


def share(value: float) -> str:
    """A probability as a page shows it: 12.35%, or n/a."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2%}"


SKIP_WORDS = {  # why a signal was skipped or its size cut (engine/_records.RULE_NAMES), as a reader says it
    "max_positions": "max positions held",
    "cash": "not enough cash",
    "max_position_pct": "position size limit",
    "max_sector_pct": "sector limit",
    "max_correlation": "too correlated with a holding",
    "size_zero": "sized to zero shares",
    "no_bar": "no bar to enter on",
    "max_volume_pct": "volume limit",
    "order_expired": "order expired unfilled",
    "atr_warmup": "ATR still warming up",
    "no_score": "rank-by score not yet defined (its share held in cash)",
}


def skip_reasons(skipped: dict[str, int]) -> str:
    """'not enough cash (74), sized to zero shares (1,254)' from BacktestResult.skipped()'s counts."""
    parts = []
    for key, n in skipped.items():
        rule, _, action = key.rpartition(" ")
        words = SKIP_WORDS.get(rule, rule.replace("_", " "))
        parts.append(f"{words}{': size cut' if action == 'cut' else ''} ({n:,})")
    return ", ".join(parts)


def metric_text(name: str, value) -> str:
    """One metric as a card or table shows it: 12.35%, 131.8%, 1,318%, 1,234 trades; never -0.00."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int | bool) or name in (
        "n_trades",
        "signals_skipped",
        "max_drawdown_bars",
        "max_win_streak",
        "max_loss_streak",
    ):
        return f"{int(value):,}"
    text = f"{value:,.{_decimals(value)}f}"
    return _unsigned_zero(text) + ("%" if name.endswith("_pct") else "")


def _decimals(value: float) -> int:
    """Fewer decimals as a figure grows, so a card never cuts it: 12.35, 131.8, 1,318, 141,235."""
    size = abs(value)
    return 0 if size >= 1000 else 1 if size >= 100 else 2


def _unsigned_zero(text: str) -> str:
    """'-0.00' -> '0.00': a change too small to show has no sign."""
    return text[1:] if text[:1] in "-+" and not text.strip("-+0.,") else text


def metrics_table(metrics: dict, baseline: dict | None = None) -> pd.DataFrame:
    """All metrics as (metric, value, [baseline,] meaning) rows of formatted text."""
    columns = {
        "metric": [LABELS.get(k, k.replace("_", " ")) for k in metrics],
        "value": [metric_text(k, v) for k, v in metrics.items()],
    }
    if baseline is not None:
        columns["baseline"] = [metric_text(k, baseline.get(k)) for k in metrics]
    columns["meaning"] = [DEFINITIONS.get(k, "") for k in metrics]
    return pd.DataFrame(columns)


def metric_delta(name: str, now, before) -> str | None:
    """The change of a metric against a baseline, as a card's delta shows it ("+1.25 pp", "-0.12", "+3
    trades"); None when either is undefined."""
    if now is None or before is None or any(isinstance(v, float) and math.isnan(v) for v in (now, before)):
        return None
    change = now - before
    if name == "n_trades":
        return f"{int(change):+,}"
    text = _unsigned_zero(f"{change:+,.{_decimals(change)}f}")
    return f"{text} pp" if name.endswith("_pct") else text


def param_title(p: Param) -> str:
    """A parameter's name with its unit, as widgets and table headers show it: "Stop-loss (%)"."""
    return p.label + (f" ({p.unit})" if p.unit and p.unit not in ("currency", "positions", "trades") else "")


_SAMPLES = {"_oos": " (out of sample)", "_in_sample": " (in sample)"}


def metric_of(col: str) -> tuple[str, str]:
    """(the metric a column holds, the sample it covers in words): `sharpe_oos` -> ("sharpe", " (out of
    sample)"); a column without a sample suffix -> (col, "")."""
    for suffix, words in _SAMPLES.items():
        if col.endswith(suffix):
            return col.removesuffix(suffix), words
    return col, ""


def column_title(col: str) -> str:
    """A results table's header: the metric's or parameter's label (`sharpe_oos` -> "Sharpe ratio (out of
    sample)", `stop_loss` -> "Stop-loss (%)"); other columns as they are."""
    name, words = metric_of(col)
    if name in LABELS:
        return LABELS[name] + words
    return param_title(TABLE[col]) if col in TABLE else col


def rule_number_titles(rule: str) -> dict[str, str]:
    """Headers for a grid's rule-number columns: `rule.1` -> "threshold of rsi(14) (30 in rsi(14) < 30)"."""
    return {f"rule.{i}": title for i, title in number_titles(rule).items()}


def flag_banner(market: Market, positions: pd.DataFrame, top: int = 5) -> str | None:
    """Words for the results' data warning: how many of the best `top` trades (and of all) held through bars
    the Data page flagged as likely splits or outliers, the first of them listed; None when none did."""
    crossed = trades_on_flagged(market, positions)
    if crossed.empty:
        return None
    best = positions.sort_values("return_pct", ascending=False).head(top)
    in_top = int(best.position_id.isin(crossed.position_id).sum())
    listed = "; ".join(
        f"{r.symbol} {r.entry_date.date()} to {r.exit_date.date()} ({r.return_pct:+,.1f}%, {r.flagged})"
        for r in crossed.head(top).itertuples()
    )
    what = "flagged split or outlier bars"
    head = f"{in_top} of the top {len(best)} trades cross {what}" if in_top else f"Trades cross {what}"
    return (
        f"{head} ({len(crossed):,} of {len(positions):,} trades in all): {listed}. Their returns may be the "
        "data's, not the rule's: back-adjust the splits or exclude these symbols on the Data page."
    )
