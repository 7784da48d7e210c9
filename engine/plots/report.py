"""The tear sheet: one self-contained HTML file (plotly.js inline, no internet needed to open it) with the
dataset, the rule, every parameter, the metrics, equity and drawdown, monthly returns, risk over time, the
trade list with MAE/MFE, and the robustness figures. The Backtest and Optimize pages and the CLI
(`python -m engine backtest ... --report report.html`) write it.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import html
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from engine import Market
from engine import params as table
from engine.backtest import BacktestResult, random_entry_test
from engine.metrics import LABELS
from engine.returns import drawdown_periods, equity_metrics, period_returns, yearly_returns
from engine.rotation import weights_pct
from engine.version import ENGINE_VERSION

from . import charts
from .format import metric_text

EDGE_TRADES = 20  # the best and the worst trades listed in the file (all of them are in the CSV download)
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0;display:block;max-width:100%;overflow-x:auto}
td,th{border:1px solid #d0d7de;padding:.25rem .5rem}
th{background:#f6f8fa;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#656d76}.grid{display:grid;grid-template-columns:1fr 1fr;gap:1.5rem}.verdict{background:#fff8c5;
padding:.6rem .8rem;border-radius:6px}.warn{background:#fff1f0;border-left:4px solid #cf222e;padding:.5rem .8rem}
code{background:#f6f8fa;padding:.1rem .3rem;border-radius:4px}
"""


def tear_sheet(
    market: Market,
    rule: str,
    result: BacktestResult,
    overfitting: dict | None = None,
    title: str = "Backtest tear sheet",
) -> str:
    """The HTML text of the tear sheet (write it with encoding='utf-8')."""
    m, p = result.metrics, result.params
    curve = result.equity
    strategy, bench = curve["equity"], curve["buy_hold_equity"]
    years = yearly_returns(strategy, bench)
    figures = [
        ("Equity and drawdown", charts.equity(result.equity, p.benchmark)),
        ("End-of-year returns against the benchmark", charts.yearly_bars(years, p.benchmark)),
        ("Monthly returns (%)", charts.monthly_returns(result.equity)),
        ("Risk over time", charts.rolling_risk(result.equity, 126, m["periods_per_year"], result.params.risk_free_pct)),
    ]
    luck = random_entry_test(market, result)
    rotation = p.rebalance != "off"
    if rotation:
        weights = weights_pct(result.holdings, market.close, result.equity.equity.to_numpy())
        figures.append(("Holdings over time (% of equity)", charts.holdings(weights, result.turnover.index)))
    if len(result.trades):
        figures.append(("Trade excursions: MAE against MFE", charts.excursions(result.positions)))
    if len(luck["random"]):
        figures.append(
            (
                "Random-entry test: this rule's Sharpe among random strategies",
                charts.null_histogram(luck["random"], luck["sharpe"]),
            )
        )
    plots = "".join(f"<h2>{html.escape(name)}</h2>{_chart_div(i, fig)}" for i, (name, fig) in enumerate(figures))
    summary = market.summary()
    sections = [
        f"<h1>{html.escape(title)}</h1><p class='muted'>Generated {dt.datetime.now():%Y-%m-%d %H:%M} by the "
        f"stock scanner &amp; backtester, engine {html.escape(ENGINE_VERSION)}.</p>",
        *(f"<p class='warn'>{html.escape(text)}</p>" for text in result.warnings),
        "<h2>Dataset and rule</h2>"
        + _table(
            [
                ("Dataset", market.name),
                ("Fingerprint", market.fingerprint),
                ("Dates", f"{summary['first_date']} to {summary['last_date']} ({summary['calendar_days']:,} bars)"),
                ("Symbols", f"{summary['symbols']:,}"),
                ("Entry rule", rule),
                ("Exit rule", p.exit_rule or "none"),
                *([("Short rule", p.short_rule)] if p.signal_type == "both" else []),
            ]
        ),
        "<h2>Parameters</h2>" + _table(_parameters(result)),
        "<h2>Robustness</h2>" + _robustness(m, overfitting, luck),
        "<h2>Strategy and benchmark</h2>" + _side_by_side(strategy, bench, p.risk_free_pct, p.benchmark),
        "<h2>Returns over periods</h2>" + _returns_table(period_returns(strategy, bench), "period"),
        "<h2>End-of-year returns</h2>" + _returns_table(years, "year"),
        "<h2>Worst 5 drawdowns</h2>" + _drawdowns(drawdown_periods(strategy)),
        "<h2>Metrics</h2>" + _table([(LABELS.get(k, k), metric_text(k, v)) for k, v in m.items()]),
        plots,
        *([_rebalances(result.turnover)] if rotation else []),
        f"<h2>Trades ({len(result.trades):,})</h2>" + _trades(result.trades),
    ]
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(sections)}{_charts_script([fig for _, fig in figures])}"
        "</body></html>"
    )


_SIDE = {
    "total_return_pct": "Total return",
    "cagr_pct": "CAGR",
    "volatility_pct": "Volatility (annualised)",
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "max_drawdown_pct": "Max drawdown",
    "calmar": "Calmar ratio",
    "best_day_pct": "Best day",
    "worst_day_pct": "Worst day",
    "up_days_pct": "Up days",
}


def _side_by_side(strategy: pd.Series, bench: pd.Series, risk_free_pct: float, benchmark: str) -> str:
    """The equity-curve metrics of the strategy and its benchmark, in two columns."""
    ours, theirs = equity_metrics(strategy, risk_free_pct), equity_metrics(bench, risk_free_pct)
    head = f"<tr><th></th><th>Strategy</th><th>Buy &amp; hold ({html.escape(benchmark or 'equal weight')})</th></tr>"
    rows = "".join(
        f"<tr><th>{label}</th><td class='n'>{_number(key, ours[key])}</td>"
        f"<td class='n'>{_number(key, theirs[key])}</td></tr>"
        for key, label in _SIDE.items()
    )
    return f"<table>{head}{rows}</table>"


def _number(key: str, value: float) -> str:
    """As the metrics table and the page's cards write it (one format for a figure everywhere)."""
    if value is None or not math.isfinite(value):
        return "-"
    return metric_text(key, float(value))


def _returns_table(frame: pd.DataFrame, what: str) -> str:
    """Strategy and benchmark returns (%) per period or year, with the difference."""
    head = f"<tr><th>{what}</th><th>Strategy</th><th>Benchmark</th><th>Difference</th></tr>"
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td class='n'>{_number('_pct', r.strategy)}</td>"
        f"<td class='n'>{_number('_pct', r.benchmark)}</td>"
        f"<td class='n'>{_number('_pct', r.strategy - r.benchmark)}</td></tr>"
        for k, r in frame.iterrows()
    )
    return f"<table>{head}{rows}</table>"


def _drawdowns(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p class='muted'>No drawdown: the equity never fell below a previous high.</p>"
    head = "<tr><th>start</th><th>valley</th><th>recovery</th><th>depth</th><th>days</th></tr>"
    rows = "".join(
        f"<tr><td>{r.start:%Y-%m-%d}</td><td>{r.valley:%Y-%m-%d}</td>"
        f"<td>{'ongoing' if pd.isna(r.recovery) else f'{r.recovery:%Y-%m-%d}'}</td>"
        f"<td class='n'>{r.depth_pct:,.2f}%</td><td class='n'>{r.days:,}</td></tr>"
        for r in frame.itertuples()
    )
    return f"<table>{head}{rows}</table>"


def _rebalances(turnover: pd.DataFrame) -> str:
    """The rotation's rebalances: value, traded, turnover, fees and what it held after each."""
    rows = "".join(
        f"<tr><td>{d:%Y-%m-%d}</td><td>{r.portfolio:,.2f}</td><td>{r.bought:,.2f}</td><td>{r.sold:,.2f}</td>"
        f"<td>{r.turnover_pct:,.1f}%</td><td>{r.fees:,.2f}</td><td>{html.escape(str(r.symbols))}</td></tr>"
        for d, r in turnover.iterrows()
    )
    names = ("date", "portfolio", "bought", "sold", "turnover", "fees", "held")
    head = "<tr>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>"
    return f"<h2>Rebalances ({len(turnover):,})</h2><table>{head}{rows}</table>"


PLOTLY_JS = Path(__file__).parent / "vendor" / "plotly-cartesian.min.js.gz"  # see vendor/SOURCE.md
# Inflate plotly.js and the figures (gzip, base64) in the browser, then draw each chart in its div; a browser
# without DecompressionStream keeps the tables and says why the charts are missing.
_LOADER = """<script>(async () => {
  const inflate = async (id) => {
    const bytes = Uint8Array.from(atob(document.getElementById(id).textContent), (c) => c.charCodeAt(0));
    return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  };
  try {
    (0, eval)(await inflate("plotly-js"));
    const figures = JSON.parse(await inflate("figures"));
    figures.forEach((f, i) => Plotly.newPlot("chart-" + i, f.data, f.layout, {displaylogo: false, responsive: true}));
  } catch (err) {
    document.querySelectorAll(".chart").forEach((d) => {
      d.textContent = "This browser could not draw the charts (" + err + "); every figure is also in the tables.";
    });
  }
})();</script>"""


@lru_cache(maxsize=1)
def _plotly_js_b64() -> str:
    return base64.b64encode(PLOTLY_JS.read_bytes()).decode("ascii")


def _compact(fig: go.Figure) -> go.Figure:
    """The figure's arrays as a chart needs them, in place: values as float32 (7 digits), daily dates as
    'YYYY-MM-DD' text. Halves what the file carries for a long equity curve."""
    for trace in fig.data:
        for name in ("x", "y", "z", "customdata"):
            values = getattr(trace, name, None)
            if isinstance(values, np.ndarray) and values.dtype == np.float64:
                trace[name] = values.astype(np.float32)
            elif isinstance(values, np.ndarray) and values.dtype.kind == "M":
                trace[name] = np.datetime_as_string(values, unit="D").tolist()
    return fig


def _chart_div(i: int, fig: go.Figure) -> str:
    height = fig.layout.height or 450
    return f"<div class='chart' id='chart-{i}' style='height:{height}px'></div>"


def _charts_script(figures: Sequence[go.Figure]) -> str:
    """plotly.js (the cartesian bundle, 0.5 MB gzipped) and every figure's JSON, gzipped and base64-encoded:
    the file opens offline and stays under 1 MB where the full plotly.js inline was 4.8 MB."""
    specs = "[" + ",".join(pio.to_json(_compact(fig), validate=False) for fig in figures) + "]"
    packed = base64.b64encode(gzip.compress(specs.encode("utf-8"), mtime=0)).decode("ascii")
    return (
        f"<script type='application/octet-stream' id='plotly-js'>{_plotly_js_b64()}</script>"
        f"<script type='application/octet-stream' id='figures'>{packed}</script>{_LOADER}"
    )


def _table(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _parameters(result: BacktestResult) -> list[tuple[str, str]]:
    p = result.params
    rows = []
    for param in table.backtest_params():
        holder = getattr(p, param.group) if param.group else p
        value = param.to_user(getattr(holder, param.name))
        unit = "" if param.unit in ("", "currency") else f" {param.unit}"
        rows.append((param.label, (param.shown(value) if value != "" else "none") + (unit if value else "")))
    return rows


def _robustness(m: dict, overfitting: dict | None, luck: dict) -> str:
    rows = [
        ("Probabilistic Sharpe (true Sharpe > 0)", metric_text("psr_pct", m.get("psr_pct"))),
        ("Random strategies at least as good (p-value)", f"{_share(luck['p_value'])} of {len(luck['random']):,}"),
    ]
    verdict = ""
    if overfitting:
        rows += [
            ("Combinations tried", f"{overfitting['n_trials']:,}"),
            ("Deflated Sharpe of the best", _share(overfitting["deflated_sharpe"])),
            ("Probability of backtest overfitting (CSCV)", _share(overfitting["pbo"])),
        ]
        verdict = f"<p class='verdict'>{html.escape(overfitting['verdict'])}</p>"
    else:
        rows.append(("Selection bias", "one backtest: no search to correct for (see the Optimize page's report)"))
    return _table(rows) + verdict


def _share(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2%}"


def _trades(trades: pd.DataFrame) -> str:
    """The best and the worst EDGE_TRADES trades by profit, compact (the full list is the page's CSV download,
    `python -m engine backtest --trades-csv`): a file of thousands of rows is megabytes and seconds to open."""
    if trades.empty:
        return "<p class='muted'>No trades.</p>"
    ranked = trades.sort_values("pnl", ascending=False)
    if len(ranked) <= 2 * EDGE_TRADES:
        return _trade_table(ranked)
    return (
        f"<p class='muted'>The best and the worst {EDGE_TRADES} of {len(trades):,} trades by profit; every trade is "
        "in the trades CSV (the Backtest page's Download trades, or the CLI's --trades-csv).</p>"
        f"<h3>Best {EDGE_TRADES}</h3>{_trade_table(ranked.head(EDGE_TRADES))}"
        f"<h3>Worst {EDGE_TRADES}</h3>{_trade_table(ranked.tail(EDGE_TRADES).iloc[::-1])}"
    )


_TRADE_COLUMNS = {
    "symbol": "symbol",
    "direction": "side",
    "entry_date": "entry",
    "entry_price": "entry price",
    "exit_date": "exit",
    "exit_price": "exit price",
    "shares": "shares",
    "pnl": "profit",
    "return_pct": "return %",
    "bars_held": "bars held",
    "exit_reason": "exit reason",
}


def _trade_table(trades: pd.DataFrame) -> str:
    shown = trades[[c for c in _TRADE_COLUMNS if c in trades]].rename(columns=_TRADE_COLUMNS).copy()
    for col in ("entry", "exit"):
        shown[col] = shown[col].dt.strftime("%Y-%m-%d")
    return shown.to_html(index=False, float_format=lambda x: f"{x:,.2f}", border=0, escape=True)
