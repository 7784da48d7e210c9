"""Plotly figures for the pages (no Streamlit here, so they are easy to test and reuse)."""

from __future__ import annotations

import ast
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine import Market
from engine.indicators import CATALOGUE
from engine.periods import PERIODS
from engine.returns import drawdown_periods
from engine.rules import parse_expression

UP, DOWN = "#26a69a", "#ef5350"


def trade_markers(position: pd.Series, fills: pd.DataFrame) -> pd.DataFrame:
    """Markers for one position on its price chart (`candles`): the limit or stop order's level, the entry
    (the average fill when it added), and each exit fill, partial exits included."""
    long_ = position.direction == "long"
    rows = []
    order_price = fills["order_price"].iloc[0] if "order_price" in fills else np.nan
    if np.isfinite(order_price):
        rows.append((position.entry_date, order_price, f"order level {order_price:,.2f}", "#6e7781", "line-ew-open"))
    adds = int(fills["adds"].max()) if "adds" in fills else 0
    entry = f"entry (average of {adds + 1} fills)" if adds else "entry"
    rows.append((position.entry_date, position.entry_price, entry, UP, "triangle-up" if long_ else "triangle-down"))
    for fill in fills.itertuples():
        partial = fill.exit_reason == "partial_exit"
        label = f"partial exit: {fill.shares:,.4g} shares" if partial else f"exit: {fill.exit_reason}"
        rows.append((fill.exit_date, fill.exit_price, label, "#fb8c00" if partial else DOWN, "x"))
    return pd.DataFrame(rows, columns=["date", "price", "label", "color", "shape"])


def candles(
    market: Market,
    symbol: str,
    overlays: dict[str, np.ndarray] | None = None,
    markers: pd.DataFrame | None = None,
    lower: dict[str, np.ndarray] | None = None,
    focus: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> go.Figure:
    """Candlesticks + volume for one symbol; overlays on price, `lower` indicators in their own panel,
    markers: rows with date, price, label, color, symbol (marker shape); `focus` (first, last date) opens
    the chart on that span with context around it (zooming out shows the rest)."""
    bars = market.frame(symbol)
    j = market.column(symbol)
    keep = ~np.isnan(market.close[:, j])
    rows = 3 if lower else 2
    heights = [0.6, 0.2, 0.2] if lower else [0.75, 0.25]
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=heights)
    fig.add_trace(
        go.Candlestick(
            x=bars.index,
            open=bars.open,
            high=bars.high,
            low=bars.low,
            close=bars.close,
            name=symbol,
            increasing_line_color=UP,
            decreasing_line_color=DOWN,
        ),
        1,
        1,
    )
    for label, values in (overlays or {}).items():
        fig.add_trace(go.Scatter(x=bars.index, y=values[keep, j], name=label, line=_line(label)), 1, 1)
    colors = np.where(bars.close >= bars.open, UP, DOWN)
    fig.add_trace(go.Bar(x=bars.index, y=bars.volume, name="volume", marker_color=colors, opacity=0.5), 2, 1)
    for label, values in (lower or {}).items():
        fig.add_trace(go.Scatter(x=bars.index, y=values[keep, j], name=label, line=_line(label)), 3, 1)
    if markers is not None and len(markers):
        for (label, color, shape), grp in markers.groupby(["label", "color", "shape"], sort=False):
            fig.add_trace(
                go.Scatter(
                    x=grp.date,
                    y=grp.price,
                    mode="markers",
                    name=label,
                    marker={"color": color, "size": 11, "symbol": shape, "line": {"width": 1, "color": "#222"}},
                ),
                1,
                1,
            )
    fig.update_layout(
        height=560,
        margin={"l": 70, "r": 20, "t": 40, "b": 40},
        xaxis_rangeslider_visible=False,
        legend={"orientation": "h", "y": 1.04},
        hovermode="x unified",
    )
    if len(bars) and not (bars.index.day_of_week >= 5).any():  # no weekend bars (not crypto): no weekend gaps
        fig.update_xaxes(rangebreaks=[{"bounds": ["sat", "mon"]}])
    if focus is not None and len(bars):
        _focus(fig, bars, *focus)
    return fig


def symbol_story(
    market: Market,
    symbol: str,
    positions: pd.DataFrame,
    equity_df: pd.DataFrame,
    indicators: dict[str, np.ndarray] | None = None,
    stop_pct: float | None = None,
    target_pct: float | None = None,
    rule: str = "",
) -> go.Figure:
    """One symbol's whole story, zoom linked across panels: its price with every trade of it (entry, exit
    coloured by outcome, the stop and target levels while held) and the rule's price-scaled indicators
    (averages, bands, channels); every other indicator of the rule in a panel of its own under the price, with
    the levels the rule compares it with (RSI with its 30); at the bottom the strategy's equity with its
    running peak, the maximum drawdown (peak to valley) and the longest drawdown (peak to recovery) marked.
    It opens on the last year, a range slider under it; the legend sits under the chart, clear of the toolbar."""
    bars = market.frame(symbol)
    j = market.column(symbol)
    keep = ~np.isnan(market.close[:, j])
    on_price: dict[str, np.ndarray] = {}
    panels: dict[str, np.ndarray] = {}
    for label, values in (indicators or {}).items():
        (on_price if on_price_scale(label, values[:, j], market.close[:, j]) else panels)[label] = values
    rows = 2 + len(panels)
    heights = [0.5, *[min(0.2, 0.4 / max(len(panels), 1))] * len(panels), 0.3]  # all panels: 0.4 at most
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=heights)
    fig.add_trace(go.Scatter(x=bars.index, y=bars.close, name=symbol, line={"color": "#555", "width": 1.2}), 1, 1)
    for label, values in on_price.items():
        fig.add_trace(go.Scatter(x=bars.index, y=values[keep, j], name=label, line=_line(label)), 1, 1)
    levels = compared_levels(rule)
    for row, (label, values) in enumerate(panels.items(), start=2):
        fig.add_trace(go.Scatter(x=bars.index, y=values[keep, j], name=label, line=_line(label)), row, 1)
        for level in levels.get(label, ()):
            fig.add_hline(y=level, line={"color": "#999", "width": 1, "dash": "dash"}, row=row, col=1)
        fig.update_yaxes(title_text=label, row=row, col=1)
    mine = positions[positions.symbol.astype(str) == symbol]
    won = mine.pnl > 0
    for kind, rows_, colour in (("win", mine[won], UP), ("loss", mine[~won], DOWN)):
        if len(rows_):
            fig.add_trace(_points(rows_.entry_date, rows_.entry_price, f"entry ({kind})", colour, "triangle-up"), 1, 1)
            fig.add_trace(_points(rows_.exit_date, rows_.exit_price, f"exit ({kind})", colour, "x"), 1, 1)
    for pct, name, colour in ((stop_pct, "stop", DOWN), (target_pct, "target", UP)):
        if pct:
            sign = -1.0 if name == "stop" else 1.0
            xs, ys = [], []
            for r in mine.itertuples():  # a segment per trade: drawing, not a computation per trade
                level = r.entry_price * (1.0 + sign * pct / 100.0 * (1 if r.direction == "long" else -1))
                xs += [r.entry_date, r.exit_date, None]
                ys += [level, level, None]
            line = {"color": colour, "width": 1, "dash": "dot"}
            fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{name} level", mode="lines", line=line), 1, 1)
    equity = equity_df.equity
    peak = equity.cummax()
    fig.add_trace(go.Scatter(x=equity.index, y=equity, name="equity", line={"color": "#1f77b4"}), rows, 1)
    fig.add_trace(go.Scatter(x=equity.index, y=peak, name="peak", line={"color": "#bbb", "dash": "dot"}), rows, 1)
    worst, longest = _drawdown_spans(equity)
    for (start, end), name, colour in (
        (worst, "max drawdown", "rgba(214,39,40,0.15)"),
        (longest, "longest drawdown", "rgba(255,152,0,0.15)"),
    ):
        if start is not None:
            where = "top left" if name == "max drawdown" else "bottom right"  # the two spans often share a peak
            fig.add_vrect(
                x0=start, x1=end, fillcolor=colour, line_width=0, row=rows, col=1, annotation_text=name,
                annotation_position=where,
            )  # fmt: skip
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="equity", row=rows, col=1)
    height = 640 + 140 * len(panels)
    if len(bars):  # the last year in view; the slider (under the last panel) reaches the rest
        last = bars.index[-1]
        fig.update_xaxes(range=[max(bars.index[0], last - pd.Timedelta(days=365)), last])
        fig.update_xaxes(rangeslider={"visible": True, "thickness": 0.05}, row=rows, col=1)
    fig.update_layout(
        height=height,
        margin={"l": 70, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "y": -0.06, "yanchor": "top", "x": 0},
        hovermode="x unified",
    )
    return fig


# Indicators on the price's own scale by what they are (their source a price): drawn on the price panel.
PRICE_SCALED = ("sma", "ema", "wma", "bb_upper", "bb_middle", "bb_lower", "high_n", "low_n", "open", "high", "low")


def on_price_scale(label: str, values: np.ndarray, close: np.ndarray) -> bool:
    """Whether an indicator is drawn on the price: an average, band or channel by name (of a price, not of
    volume), else an own column or expression whose level follows the price (`moves_with_price`)."""
    name = label.split("(", 1)[0].strip().lower()
    if name in PRICE_SCALED:
        return "volume" not in label
    return name not in CATALOGUE and moves_with_price(values, close)


def compared_levels(rule: str) -> dict[str, list[float]]:
    """The fixed levels the rule compares each indicator with: {'rsi(14)': [30.0]} for rsi(14) < 30."""
    out: dict[str, list[float]] = {}
    if not rule:
        return out
    try:
        tree = parse_expression(rule.replace("\n", " "))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return out
    source = rule.replace("\n", " ")
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            numbers = [_constant(side) for side in sides]
            for side, number in zip(sides, numbers, strict=True):
                if number is None:
                    text = (ast.get_source_segment(source, side) or "").strip()
                    out.setdefault(text, []).extend(n for n in numbers if n is not None)
    return out


def _constant(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _constant(node.operand)
        return None if inner is None else -inner
    return None


def _points(x: pd.Series, y: pd.Series, name: str, colour: str, shape: str) -> go.Scatter:
    marker = {"color": colour, "size": 10, "symbol": shape, "line": {"width": 1, "color": "#222"}}
    return go.Scatter(x=x, y=y, mode="markers", name=name, marker=marker)


def _drawdown_spans(equity: pd.Series) -> tuple[tuple, tuple]:
    """((peak date, valley date) of the deepest drawdown, (peak date, recovery or last date) of the longest in
    days), from the tear sheet's drawdown periods."""
    periods = drawdown_periods(equity, n=len(equity))
    if periods.empty:
        return (None, None), (None, None)
    deepest, longest = periods.iloc[0], periods.loc[periods.days.idxmax()]
    end = longest.recovery if not pd.isna(longest.recovery) else equity.index[-1]
    return (deepest.start, deepest.valley), (longest.start, end)


def _line(label: str) -> dict:
    """An indicator's line; a period value (weekly(...), monthly(...)) holds until the next period ends, so
    it is drawn as steps."""
    step = label.lstrip().startswith(tuple(f"{name}(" for name in PERIODS))
    return {"width": 1.2, "shape": "hv"} if step else {"width": 1.2}


def _focus(fig: go.Figure, bars: pd.DataFrame, first: pd.Timestamp, last: pd.Timestamp) -> None:
    """Show bars first..last with twice their length (at least 20 bars) on each side, prices and volume
    scaled to what is in view."""
    i, j = bars.index.searchsorted(first), bars.index.searchsorted(last)
    pad = max(20, 2 * (j - i))
    view = bars.iloc[max(i - pad, 0) : min(j + pad, len(bars) - 1) + 1]
    low, high = float(view.low.min()), float(view.high.max())
    margin = (high - low) * 0.05 or high * 0.05
    fig.update_xaxes(range=[view.index[0], view.index[-1]])
    fig.update_yaxes(range=[low - margin, high + margin], row=1, col=1)
    top = float(view.volume.max())
    fig.update_yaxes(range=[0, top * 1.1 if top > 0 else 1.0], row=2, col=1)  # no volume (NaN or 0): any scale


def moves_with_price(values: np.ndarray, close: np.ndarray) -> bool:
    """Whether an indicator belongs on the price panel (a moving average, a band, a channel) rather than in
    its own (an oscillator): it is on the price's scale and its level follows the price. A scale test alone
    put RSI (10-90) over a stock trading between 13 and 195."""
    both = np.isfinite(values) & np.isfinite(close)
    if both.sum() < 3:
        return False
    v, c = values[both], close[both]
    if not 0.5 <= np.median(np.abs(v)) / np.median(np.abs(c)) <= 2.0:
        return False
    if np.std(v) == 0 or np.std(c) == 0:
        return bool(np.allclose(v, c, rtol=0.5))
    return bool(np.corrcoef(v, c)[0, 1] >= 0.9)


def equity(
    equity_df: pd.DataFrame,
    benchmark: str = "",
    baseline: pd.Series | None = None,
    height: int | None = None,
    show_benchmark: bool = True,
    relative: bool = False,
) -> go.Figure:
    """Equity and, when `show_benchmark`, buy and hold of the benchmark (equal weight of all symbols by
    default), drawdown underneath; `baseline`: a run to compare with, drawn in grey, or with `relative` the
    strategy's lead over it in % (a +1 pp edit is visible however far the curves have grown); `height` in
    pixels (None: the default). The log axis is labelled in full at 1-2-5 steps ("200k", "2M")."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=[0.7, 0.3])
    if relative and baseline is not None:
        lead = (equity_df.equity / baseline.reindex(equity_df.index).to_numpy() - 1.0) * 100.0
        fig.add_trace(
            go.Scatter(x=equity_df.index, y=lead, name="Strategy against baseline %", line={"color": "#1f77b4"}), 1, 1
        )
        fig.add_hline(y=0, line={"color": "#aaa", "width": 1}, row=1, col=1)
        fig.update_yaxes(title_text="Against baseline %", ticksuffix="%", row=1, col=1)
    else:
        shown = [equity_df.equity]
        if baseline is not None:
            grey = {"color": "#aaa", "width": 1.5}
            fig.add_trace(go.Scatter(x=baseline.index, y=baseline.to_numpy(), name="Baseline", line=grey), 1, 1)
            shown.append(baseline)
        fig.add_trace(
            go.Scatter(x=equity_df.index, y=equity_df.equity, name="Strategy", line={"color": "#1f77b4"}), 1, 1
        )
        if show_benchmark:
            fig.add_trace(
                go.Scatter(
                    x=equity_df.index,
                    y=equity_df.buy_hold_equity,
                    name=f"Buy & hold ({benchmark or 'equal weight'})",
                    line={"color": "#999", "dash": "dot"},
                ),
                1,
                1,
            )
            shown.append(equity_df.buy_hold_equity)
        values, text = log_ticks(pd.concat(shown).to_numpy(float))
        fig.update_yaxes(title_text="Equity (log scale)", type="log", tickvals=values, ticktext=text, row=1, col=1)
    fig.add_trace(
        go.Scatter(
            x=equity_df.index,
            y=equity_df.drawdown_pct,
            name="Drawdown %",
            fill="tozeroy",
            line={"color": DOWN, "width": 1},
        ),
        2,
        1,
    )
    fig.update_yaxes(title_text="Drawdown %", row=2, col=1)
    fig.update_layout(
        height=height or 480,
        margin={"l": 70, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": 1.06},
        hovermode="x unified",
    )
    return fig


def log_ticks(values: np.ndarray, most: int = 8) -> tuple[list[float], list[str]]:
    """Tick values at 1-2-5 steps covering the positive values (every step when few fit, else 1-x10 only),
    each labelled in full with a compact unit: 50k, 100k, 200k, 2M."""
    finite = values[np.isfinite(values) & (values > 0)]
    if not len(finite):
        return [], []
    lo, hi = float(finite.min()), float(finite.max())
    ticks = [
        m * 10.0**k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5)
    ]
    inside = [t for t in ticks if lo / 1.5 <= t <= hi * 1.5]
    if sum(lo <= t <= hi for t in inside) < 3 and hi > lo:  # a narrow range: even steps within it
        step = next(
            m * 10.0**k
            for k in range(math.floor(math.log10(hi - lo)) - 2, 99)
            for m in (1, 2, 5)
            if (hi - lo) / (m * 10.0**k) <= 6
        )
        inside = [float(t) for t in np.arange(math.floor(lo / step) * step, hi + step, step)]
    elif len(inside) > most:
        inside = [t for t in inside if str(t).startswith("1")] or inside
    for digits in range(3, 8):  # as many digits as tell the ticks apart
        text = [compact_number(t, digits) for t in inside]
        if len(set(text)) == len(text):
            break
    return inside, text


def compact_number(x: float, digits: int = 3) -> str:
    """1,500 -> 1.5k, 2,000,000 -> 2M, 250 -> 250 (at most `digits` significant digits)."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:,.{digits}g}{unit}"
    return f"{x:,.{digits}g}"


def monthly_returns(equity_df: pd.DataFrame) -> go.Figure:
    """Heatmap of month-by-month returns in %, every year down (one without data is an empty row), months
    across, and the year's return in a last column."""
    month_end = equity_df.equity.resample("ME").last()
    rets = month_end.pct_change() * 100
    rets.iloc[0] = (month_end.iloc[0] / equity_df.equity.iloc[0] - 1) * 100
    table = pd.DataFrame({"year": rets.index.year, "month": rets.index.month, "ret": rets.to_numpy()})
    years = range(int(table.year.min()), int(table.year.max()) + 1)
    grid = table.pivot(index="year", columns="month", values="ret").reindex(index=years, columns=range(1, 13))
    year_end = equity_df.equity.groupby(equity_df.index.year).last()
    start = year_end.shift(1).fillna(equity_df.equity.iloc[0])
    grid[13] = ((year_end / start - 1) * 100).reindex(years)
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Year"]
    text = grid.map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    monthly = grid[list(range(1, 13))]
    limit = float(np.nanmax(np.abs(monthly.to_numpy()))) if monthly.notna().any().any() else 1.0
    colours = grid.assign(**{"13": grid[13].clip(-limit, limit)}).drop(columns=13)  # the year: on the months' scale
    fig = go.Figure(
        go.Heatmap(
            z=colours.to_numpy(),
            x=months,
            y=[str(y) for y in grid.index],
            text=text.to_numpy(),
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmid=0,
            zmin=-limit,
            zmax=limit,
            colorbar={"title": "%"},
        )
    )
    fig.update_layout(
        height=90 + 28 * len(grid),
        margin={"l": 60, "r": 20, "t": 20, "b": 40},
        yaxis={"autorange": "reversed", "type": "category"},
    )
    return fig


def holdings(weights: pd.DataFrame, rebalances: pd.DatetimeIndex, most: int = 12) -> go.Figure:
    """A rotation's holdings over time: each symbol's share of equity at each close, stacked (cash is the rest
    up to 100%), the `most` largest by average weight named and the others summed; rebalances marked."""
    held = weights.loc[:, weights.abs().sum() > 0]
    order = held.mean().sort_values(ascending=False).index
    shown = held[order[:most]]
    if len(order) > most:
        shown = shown.assign(**{f"{len(order) - most} others": held[order[most:]].sum(axis=1)})
    fig = go.Figure()
    for name in shown.columns:
        fig.add_trace(
            go.Scatter(
                x=shown.index, y=shown[name], name=str(name), stackgroup="held", mode="lines", line={"width": 0.5}
            )
        )
    for when in rebalances:
        fig.add_vline(x=when, line={"color": "#bbb", "width": 0.5, "dash": "dot"})
    fig.update_layout(yaxis_title="% of equity", hovermode="x unified", yaxis={"ticksuffix": "%"})
    return _layout(fig, 420)


def _layout(fig: go.Figure, height: int = 420) -> go.Figure:
    fig.update_layout(
        height=height, margin={"l": 70, "r": 20, "t": 50, "b": 40}, legend={"orientation": "h", "y": 1.08}
    )
    return fig


def yearly_bars(years: pd.DataFrame, benchmark: str = "") -> go.Figure:
    """End-of-year returns in %, the strategy's beside the benchmark's (`engine.returns.yearly_returns`)."""
    fig = go.Figure()
    x = [str(y) for y in years.index]
    fig.add_trace(go.Bar(x=x, y=years.strategy, name="Strategy", marker={"color": "#1f77b4"}))
    fig.add_trace(
        go.Bar(x=x, y=years.benchmark, name=f"Buy & hold ({benchmark or 'equal weight'})", marker={"color": "#bbb"})
    )
    fig.update_layout(barmode="group", yaxis_title="return %", yaxis={"ticksuffix": "%"}, xaxis={"type": "category"})
    return _layout(fig, 340)


def best_so_far(objective: np.ndarray, label: str) -> go.Figure:
    """A search's progress: each trial's objective (NaN: not eligible) and the best so far, by trial."""
    trials = np.arange(1, len(objective) + 1)
    best = np.fmax.accumulate(np.where(np.isnan(objective), -np.inf, objective))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=trials, y=objective, mode="markers", name="trial", marker={"color": "#999", "size": 5}))
    fig.add_trace(
        go.Scatter(x=trials, y=np.where(np.isfinite(best), best, np.nan), name="best so far", line={"shape": "hv"})
    )
    fig.update_layout(xaxis_title="trial", yaxis_title=label, hovermode="x unified")
    return _layout(fig, 320)


def grid_heatmap(
    cells: pd.DataFrame, x: str, y: str, z: str, title: str, sampled: bool = False, names: dict | None = None
) -> go.Figure:
    """A (y x x) grid of values (optimize.heatmap_cells, or its stability); click a cell to open it. `sampled`:
    a search tried only some cells; a dot marks each tried one."""
    xs, ys = [f"{v:g}" for v in cells.columns], [f"{v:g}" for v in cells.index]
    values = cells.to_numpy()
    fig = go.Figure(
        go.Heatmap(
            z=values, x=xs, y=ys, colorscale="RdYlGn", colorbar={"title": z}, texttemplate="%{z:.2f}", hoverinfo="skip"
        )
    )
    # Streamlit reports clicks on scatter points, not on heatmap cells: a near-invisible marker per cell takes
    # the clicks (and shows the hover text).
    gx, gy = np.meshgrid(xs, ys)
    hover = f"{x}=%{{x}}<br>{y}=%{{y}}<br>{z}=%{{customdata:.3f}}<extra></extra>"
    marker = {"symbol": "square", "size": 36, "opacity": 0.01, "color": "#000"}
    fig.add_trace(
        go.Scatter(
            x=gx.ravel(),
            y=gy.ravel(),
            customdata=values.ravel(),
            mode="markers",
            showlegend=False,
            marker=marker,
            hovertemplate=hover,
        )
    )
    if sampled:
        tried = ~np.isnan(values.ravel().astype(float))
        dot = {"size": 30, "color": "#333", "symbol": "square-open", "line": {"width": 1.5}}  # an outline
        fig.add_trace(
            go.Scatter(
                x=gx.ravel()[tried], y=gy.ravel()[tried], mode="markers", marker=dot, name="tried", hoverinfo="skip"
            )
        )
    names = names or {}
    fig.update_layout(
        xaxis_title=names.get(x, x),  # "Stop-loss (%)", not stop_loss
        yaxis_title=names.get(y, y),
        title=title,
        xaxis={"type": "category"},
        yaxis={"type": "category"},
        clickmode="event+select",
    )
    return _layout(fig)


def sensitivity(table: pd.DataFrame, keys: list[str], z: str) -> go.Figure:
    """For each parameter, the objective's best and mean at each of its values: flat lines mean robust."""
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=keys, shared_yaxes=True)
    for i, key in enumerate(keys, start=1):
        g = table.groupby(key)[z]
        for stat, dash in (("max", None), ("mean", "dot")):
            s = g.agg(stat)
            fig.add_trace(
                go.Scatter(
                    x=s.index,
                    y=s.to_numpy(),
                    name=f"{stat}",
                    mode="lines+markers",
                    line={"dash": dash, "color": "#1f6feb"},
                    showlegend=i == 1,
                ),
                1,
                i,
            )
    fig.update_yaxes(title_text=z, col=1)
    return _layout(fig, 340)


def in_vs_out(merged: pd.DataFrame, z: str) -> go.Figure:
    """Each combination's in-sample vs out-of-sample objective: overfitting shows as no relation."""
    fig = go.Figure(go.Scatter(x=merged[z], y=merged[f"{z}_oos"], mode="markers", marker={"size": 7, "opacity": 0.6}))
    fig.update_layout(xaxis_title=f"{z} in-sample", yaxis_title=f"{z} out-of-sample")
    return _layout(fig, 380)


def fan(bands: pd.DataFrame, samples: np.ndarray) -> go.Figure:
    """Equity paths (start = 1) by step (trade or bar): a few samples, the 5-95 and 25-75 bands, the median."""
    fig = go.Figure()
    x = bands.index.to_numpy()
    for path in samples[:30]:
        fig.add_trace(
            go.Scatter(
                x=x, y=path, mode="lines", line={"width": 0.5, "color": "#bbb"}, showlegend=False, hoverinfo="skip"
            )
        )
    for lo, hi, color, name in (
        ("p5", "p95", "rgba(31,111,235,0.15)", "5-95%"),
        ("p25", "p75", "rgba(31,111,235,0.3)", "25-75%"),
    ):
        fig.add_trace(go.Scatter(x=x, y=bands[hi], line={"width": 0}, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=bands[lo], fill="tonexty", fillcolor=color, line={"width": 0}, name=name))
    fig.add_trace(go.Scatter(x=x, y=bands["p50"], name="median", line={"color": "#1f6feb", "width": 2}))
    fig.update_layout(xaxis_title=bands.index.name or "trade", yaxis_title="equity (start = 1)")
    return _layout(fig)


def histogram(values: np.ndarray, title: str, marker: float | None = None) -> go.Figure:
    fig = go.Figure(go.Histogram(x=values, nbinsx=60, marker_color="#1f6feb"))
    if marker is not None:
        fig.add_vline(x=marker, line={"color": DOWN, "dash": "dash"})
    fig.update_layout(title=title, bargap=0.02)
    return _layout(fig, 320)


def equity_overlay(curves: dict[str, pd.Series]) -> go.Figure:
    """Several runs' equity curves on one log-scale chart, for comparison."""
    fig = go.Figure([go.Scatter(x=s.index, y=s.to_numpy(), name=name) for name, s in curves.items()])
    fig.update_yaxes(type="log", title_text="Equity (log scale)")
    return _layout(fig)


def excursions(trades: pd.DataFrame) -> go.Figure:
    """Each trade's worst (MAE) against best (MFE) excursion, winners and losers apart: where stops and
    targets would have cut."""
    fig = go.Figure()
    for name, win, color in (("winners", True, UP), ("losers", False, DOWN)):
        t = trades[(trades.pnl > 0) == win]
        fig.add_trace(
            go.Scatter(
                x=t.mae_pct,
                y=t.mfe_pct,
                mode="markers",
                name=name,
                marker={"color": color},
                text=t.symbol.astype(str) + " " + t.entry_date.dt.strftime("%Y-%m-%d"),
                hovertemplate="%{text}<br>MAE %{x:.2f}%<br>MFE %{y:.2f}%<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="MAE: worst excursion while held (%)")
    fig.update_yaxes(title_text="MFE: best excursion while held (%)")
    return _layout(fig, 380)


def rolling_risk(
    equity_df: pd.DataFrame, window: int, periods_per_year: float, risk_free_pct: float = 0.0
) -> go.Figure:
    """Rolling Sharpe ratio (of returns over the risk-free rate, as the headline Sharpe) and annualised
    volatility over `window` bars, and gross exposure, one above the other."""
    r = equity_df.equity.pct_change()
    excess = r - risk_free_pct / 100.0 / periods_per_year
    mean, sd = excess.rolling(window).mean(), r.rolling(window).std()
    sharpe = (mean / sd.where(sd > 0)) * np.sqrt(periods_per_year)
    vol = sd * np.sqrt(periods_per_year) * 100
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        subplot_titles=(
            f"Rolling Sharpe ({window} bars)",
            f"Rolling volatility ({window} bars, %)",
            "Exposure (% of equity): gross, and net (long - short)",
        ),
    )
    fig.add_trace(go.Scatter(x=r.index, y=sharpe, name="Sharpe", line={"color": "#1f6feb"}), 1, 1)
    fig.add_hline(y=0, line={"color": "#999", "width": 1}, row=1, col=1)
    fig.add_trace(go.Scatter(x=r.index, y=vol, name="Volatility %", line={"color": "#8250df"}), 2, 1)
    fig.add_trace(
        go.Scatter(
            x=r.index, y=equity_df.gross_exposure_pct, name="Gross %", fill="tozeroy", line={"color": UP, "width": 1}
        ),
        3,
        1,
    )
    if "net_exposure_pct" in equity_df and (equity_df.short_value > 0).any():  # net = gross for a long-only book
        fig.add_trace(
            go.Scatter(x=r.index, y=equity_df.net_exposure_pct, name="Net %", line={"color": "#1f6feb", "width": 1}),
            3,
            1,
        )
    fig.update_layout(showlegend=False, hovermode="x unified")
    return _layout(fig, 620)


def null_histogram(random: np.ndarray, own: float) -> go.Figure:
    """Sharpe ratios of random-entry strategies, with the strategy's own as a line."""
    fig = go.Figure(go.Histogram(x=random[np.isfinite(random)], nbinsx=50, marker_color="#bbb", name="random entries"))
    fig.add_vline(x=own, line={"color": "#1f6feb", "width": 3}, annotation_text="this rule")
    fig.update_layout(
        xaxis_title="Sharpe ratio (equal-weight book of the trades)",
        yaxis_title="random strategies",
        bargap=0.02,
        showlegend=False,
    )
    return _layout(fig, 320)


def _band(
    x: pd.Index, low: pd.Series, high: pd.Series, name: str = "95% band", color: str = "rgba(31,111,235,0.15)"
) -> list[go.Scatter]:
    """A shaded band between two lines (the upper edge, then the lower filled up to it)."""
    return [
        go.Scatter(x=x, y=high, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"),
        go.Scatter(x=x, y=low, mode="lines", line={"width": 0}, fill="tonexty", fillcolor=color, name=name),
    ]


def drift(path: pd.DataFrame, what: str) -> go.Figure:
    """The event-study drift: the mean cumulative return (or excess) bar by bar after the signal, with its 95%
    band (date-clustered), over the grey band where 95% of as many random entries' means fall."""
    pct = path[["mean", "low", "high", "random_low", "random_high"]] * 100.0
    fig = go.Figure(
        [
            *_band(pct.index, pct["random_low"], pct["random_high"], "random entries (95%)", "rgba(120,120,120,0.2)"),
            *_band(pct.index, pct["low"], pct["high"]),
            go.Scatter(x=pct.index, y=pct["mean"], line={"color": "#1f6feb", "width": 2}, name=f"mean {what}"),
        ]
    )
    fig.add_hline(y=0, line={"color": "#888", "width": 1})
    fig.update_layout(xaxis_title="bars after the signal", yaxis_title=f"cumulative {what} (%)")
    return _layout(fig, 300)


def sweep_line(table: pd.DataFrame, title: str, what: str) -> go.Figure:
    """The mean excess (or return, %) at one horizon for each value of a rule number, with its 95% band."""
    pct = table[["mean", "ci_low", "ci_high"]] * 100.0
    fig = go.Figure(
        [
            *_band(pct.index, pct["ci_low"], pct["ci_high"]),
            go.Scatter(
                x=pct.index,
                y=pct["mean"],
                mode="lines+markers",
                line={"color": "#1f6feb"},
                name=f"mean {what}",
                customdata=table["events"],
                hovertemplate="%{x}: %{y:+.2f}% over %{customdata:,} signals<extra></extra>",
            ),
        ]
    )
    fig.add_hline(y=0, line={"color": "#888", "width": 1})
    fig.update_layout(xaxis_title=title, yaxis_title=f"mean {what} (%)")
    return _layout(fig, 300)


def quantile_bars(by_quantile: pd.DataFrame) -> go.Figure:
    """The mean forward return (%) of each factor quantile (1 = lowest), one group of bars per horizon."""
    fig = go.Figure(
        [
            go.Bar(
                name=f"{h} bar{'s' if h != 1 else ''}", x=[f"Q{q}" for q in by_quantile.index], y=by_quantile[h] * 100
            )
            for h in by_quantile.columns
        ]
    )
    fig.update_layout(barmode="group", xaxis_title="factor quantile (1 = lowest)", yaxis_title="mean return (%)")
    return _layout(fig, 300)


def monthly_ic(ic_monthly: pd.Series, horizon: int) -> go.Figure:
    """The factor's mean information coefficient per month at one horizon."""
    values = ic_monthly.dropna()
    colors = ["#2da44e" if v >= 0 else "#cf222e" for v in values]
    fig = go.Figure(go.Bar(x=values.index.to_timestamp(), y=values, marker_color=colors, name="IC"))
    fig.update_layout(xaxis_title="month", yaxis_title=f"mean IC ({horizon} bars)", showlegend=False)
    return _layout(fig, 300)


def forward_histogram(
    counts: np.ndarray, edges: np.ndarray, horizon: int, mean: float, benchmark_mean: float | None = None
) -> go.Figure:
    """The returns of every signal `horizon` bars later as bars of precomputed bins (%), so a click names its
    bin; with their mean and the benchmark's mean."""
    centers, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = go.Figure(
        go.Bar(
            x=centers,
            y=counts,
            width=widths,
            marker_color="#8cb4e8",
            name="signals",
            customdata=np.column_stack([edges[:-1], edges[1:]]),
            hovertemplate="%{customdata[0]:+.1f}% to %{customdata[1]:+.1f}%: %{y} signals<extra></extra>",
        )
    )
    if np.isfinite(mean):
        fig.add_vline(x=mean * 100.0, line={"color": "#1f6feb", "width": 3}, annotation_text="mean")
    if benchmark_mean is not None and np.isfinite(benchmark_mean):
        fig.add_vline(
            x=benchmark_mean * 100.0,
            line={"color": "#888", "width": 2, "dash": "dot"},
            annotation_text="benchmark",
            annotation_position="bottom right",
        )
    bars = f"{horizon} bar{'s' if horizon != 1 else ''}"
    fig.update_layout(
        xaxis_title=f"return {bars} after the signal (%): click a bar for its signals",
        yaxis_title="signals",
        bargap=0.02,
        showlegend=False,
    )
    return _layout(fig, 300)


def stitched_equity(oos_equity: pd.DataFrame, windows: pd.DataFrame) -> go.Figure:
    """The walk-forward's out-of-sample equity, window after window, with each test window's start marked."""
    fig = go.Figure(
        go.Scatter(x=oos_equity.index, y=oos_equity.equity, name="out-of-sample equity", line={"color": "#1f6feb"})
    )
    for start in windows.get("test_start", []):
        fig.add_vline(x=start, line={"color": "#d0d7de", "width": 1})
    fig.update_layout(title="Stitched out-of-sample equity (a line per re-optimisation)", yaxis_title="equity")
    return _layout(fig, 380)


def chosen_parameters(windows: pd.DataFrame, keys: list[str]) -> go.Figure:
    """The parameters each walk-forward window chose, one line per parameter: stable choices are a good sign."""
    fig = make_subplots(
        rows=max(len(keys), 1),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=keys or ["no parameters"],
    )
    for i, key in enumerate(keys, start=1):
        fig.add_trace(
            go.Scatter(x=windows["test_start"], y=windows[key], mode="lines+markers", name=key, line={"shape": "hv"}),
            i,
            1,
        )
    fig.update_layout(showlegend=False, title="Parameters chosen per window")
    return _layout(fig, 140 + 160 * max(len(keys), 1))
