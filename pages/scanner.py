"""Scanner page: presets, condition widgets or typed rules -> signals on every symbol, live."""

import numpy as np
import pandas as pd
import streamlit as st

from app import dataset, links, screens, widgets
from app import formatting as app_format
from app import state as app_state
from app.widgets import KEEP, param_widget
from engine import InputError
from engine.events import MAX_SWEEP, flagged_events
from engine.plots import charts
from engine.rules import (
    COLUMN_PRESETS,
    PRESETS,
    Condition,
    RuleError,
    available,
    conditions_to_rule,
    missing_columns,
    number_titles,
    rule_numbers,
)

st.title("Scanner")
widgets.seed_widget("rule_text", app_state.rule())


def _apply(text: str) -> None:
    widgets.set_widget("rule_text", text)
    app_state.set_rule(text)


market = dataset.require_market()
own = market.column_kinds()
presets = PRESETS | COLUMN_PRESETS


def _on_preset() -> None:
    if widgets.widget("w.scanner.preset") in presets:
        _apply(presets[widgets.widget("w.scanner.preset")])


has_volume = bool((~np.isnan(market.volume)).any())


def _preset_label(name: str) -> str:
    lacking = missing_columns(presets[name], own, has_volume) if name in presets else []
    return f"{name} — needs a {', '.join(lacking)} column" if lacking else name


left, right = st.columns([1, 2])
with left:
    widgets.seed_widget("w.scanner.preset", "(custom)")
    st.selectbox(
        "Preset",
        ["(custom)", *presets],
        key="w.scanner.preset",
        on_change=_on_preset,
        format_func=_preset_label,
        persist_state=KEEP,
    )
    with st.expander("Build from conditions"):
        conds = []
        for i, (left_text, op, right_text) in enumerate(
            [("rsi(14)", "<", "30"), ("close", ">", "sma(200)"), ("", ">", "")]
        ):
            k = f"w.scanner.cond{i}"
            widgets.seed_widget(f"{k}.left", left_text)
            widgets.seed_widget(f"{k}.op", op)
            widgets.seed_widget(f"{k}.right", right_text)
            a, b, c = st.columns([3, 2, 2])
            lhs = a.text_input("Left", key=f"{k}.left", label_visibility="collapsed", persist_state=KEEP)
            op = b.selectbox(
                "Op",
                ["<", "<=", ">", ">=", "==", "!=", "crosses_above", "crosses_below"],
                key=f"{k}.op",
                label_visibility="collapsed",
                persist_state=KEEP,
            )
            rhs = c.text_input("Right", key=f"{k}.right", label_visibility="collapsed", persist_state=KEEP)
            if lhs.strip() and rhs.strip():
                conds.append(Condition(lhs.strip(), op, rhs.strip()))
        widgets.seed_widget("w.scanner.join", "and")
        join = st.radio("Join with", ["and", "or"], horizontal=True, key="w.scanner.join", persist_state=KEEP)
        if own:
            st.caption(
                "The data's own columns: "
                + ", ".join(f"`{name}`" + (' (text: == "...")' if kind == "text" else "") for name, kind in own.items())
            )
        if st.button("Use these conditions", disabled=not conds):
            _apply(conditions_to_rule(conds, join))
with right:
    st.text_area(
        "Rule",
        key="rule_text",
        height=90,
        on_change=lambda: app_state.set_rule(widgets.widget("rule_text")),
        help="e.g. rsi(14) < 30 and close > sma(200) rank by relative_volume(20) desc",
    )
    if widgets.value("signal_type") == "both":  # Direction (Backtest page): longs and shorts in one book
        param_widget("short_rule", help="Its signals open shorts; the rule above opens longs. e.g. rsi(14) > 70")
    st.caption(f"Available — {available(own)}.")

lacking = missing_columns(app_state.rule(), own, has_volume)
if lacking and widgets.widget("w.scanner.preset") in presets:
    st.warning(
        f"This preset needs a {', '.join(lacking)} column, which this data does not have: load or attach a file "
        "with it on the Data page, or edit the rule."
    )
try:
    signals = app_state.signals()
except RuleError as exc:
    st.error(f"**This rule cannot run.**\n\n```\n{exc}\n```")
    st.stop()

hits = signals.table(market)
cols = st.columns(4)
cols[0].metric("Signals", f"{signals.count:,}")
cols[1].metric("Symbols hit", f"{signals.symbols_hit()} / {len(market.symbols)}")
cols[2].metric("Latest signal", hits.date.iloc[0].date().isoformat() if len(hits) else "—")
cols[3].page_link("../pages/backtest.py", label="Backtest these signals →", icon=":material/monitoring:")
try:
    shorts = app_state.short_signals()
except RuleError as exc:
    st.error(f"**The short rule cannot run.**\n\n```\n{exc}\n```")
    shorts = None
if shorts is not None:
    st.caption(f"Short rule: **{shorts.count:,}** signals on {shorts.symbols_hit()} symbols (they open shorts).")

if not len(hits):
    if lacking:
        st.info(
            f"No bar matches this rule: it needs a {', '.join(lacking)} column, which this data does not have "
            "(its values are empty). Load a file with it, or use a rule without it."
        )
    else:
        st.info("No bar matches this rule. Loosen a threshold, or try a preset.")
    st.stop()

with st.expander("Save screen: keep this rule on the Screens page, with its track record from now on"):
    name_col, note_col_, shared_col, save_col = st.columns([2, 3, 1, 1], vertical_alignment="bottom")
    screen_name = name_col.text_input("Name", key="w.scanner.save_name", max_chars=80, placeholder="Oversold leaders")
    screen_note = note_col_.text_input("Note (optional)", key="w.scanner.save_note", max_chars=500)
    screen_shared = shared_col.checkbox("Shared", key="w.scanner.save_shared", help="The team sees it on Screens.")
    if save_col.button("Save screen", key="w.scanner.save", disabled=not screen_name.strip()):
        st.info(screens.save(screen_name, screen_note, screen_shared))
    follows = screens.data_of_session() or ""
    st.caption(f"It follows `{follows}`" + (": the family's latest version." if follows.startswith("family:") else "."))

# --- the screen on one bar (the latest by default), who entered and left, and every hit -------------------------
day_col, note_col = st.columns([1, 3], vertical_alignment="bottom")
chosen = links.screen_date()
first_day, last_day = market.dates[0].date(), market.dates[-1].date()
start_day = min(max(pd.Timestamp(chosen).date(), first_day), last_day) if chosen else last_day
picked = day_col.date_input(
    "Screen on",
    value=start_day,
    min_value=market.dates[0].date(),
    max_value=market.dates[-1].date(),
    key=f"w.scanner.on.{dataset.data_id()}",
    help="The matches on this bar (the last bar on or before the date), ranked when the rule ranks.",
)
links.set_screen_date(None if picked == last_day else picked.isoformat())  # the link carries it
screen = signals.on(picked, market)
note_col.caption(
    f"On **{screen.date:%Y-%m-%d}**: {len(screen.matches):,} matches, {len(screen.entered):,} entered and "
    f"{len(screen.left):,} left since the bar before. Click a column to sort."
)
on_tab, entered_tab, left_tab, history_tab = st.tabs(
    [
        f"Matches ({len(screen.matches):,})",
        f"Entered ({len(screen.entered):,})",
        f"Left ({len(screen.left):,})",
        f"Every hit ({len(hits):,})",
    ]
)
for tab, rows, empty in (
    (on_tab, screen.matches, "No symbol matches on this bar."),
    (entered_tab, screen.entered, "No symbol entered the screen on this bar."),
    (left_tab, screen.left, "No symbol left the screen on this bar."),
):
    with tab:
        if len(rows):
            st.dataframe(
                rows, width="stretch", hide_index=True, height=280, column_config=app_format.two_decimal_columns(rows)
            )
        else:
            st.caption(empty)
with history_tab:
    st.dataframe(
        hits.head(2000),
        width="stretch",
        hide_index=True,
        height=280,
        column_config=app_format.two_decimal_columns(hits),
    )
    if len(hits) > 2000:
        st.caption(f"Showing the newest 2,000 of {len(hits):,} hits.")

hit_symbols = list(pd.unique(hits.symbol))
symbol = st.selectbox("Chart symbol", hit_symbols, key=f"scan_symbol.{dataset.data_id()}")
j = market.column(symbol)
overlays: dict[str, np.ndarray] = {}
lower: dict[str, np.ndarray] = {}
for label, values in app_state.indicator_series().items():
    (overlays if charts.on_price_scale(label, values[:, j], market.close[:, j]) else lower)[label] = values
mine = hits[hits.symbol == symbol]


def signal_markers(dates: pd.Series | list, column: int) -> pd.DataFrame:
    """Orange triangles under the lows of the signal bars, for the candle chart."""
    rows = market.dates.get_indexer(pd.DatetimeIndex(dates))
    return pd.DataFrame(
        {
            "date": list(dates),
            "price": market.low[rows, column] * 0.98,
            "label": "signal",
            "color": "#ff9800",
            "shape": "triangle-up",
        }
    )


markers = signal_markers(mine.date, j)
st.plotly_chart(charts.candles(market, symbol, overlays, markers, lower or None), width="stretch")

# --- What happened next: every signal's forward return, against the benchmark and random entries -------------
st.subheader("What happened next")
st.caption(
    "Every signal counts here, entered at the next open and held each horizon, whatever a portfolio could afford: "
    "the screen's own edge, before cash, slots and exits. Intervals are clustered by signal date (stocks hitting "
    "on one day are not independent)."
)
event_cols = st.columns(4)
for event_col, path in zip(
    event_cols, ("events.horizons", "events.entry", "events.cooldown", "events.benchmark"), strict=True
):
    param_widget(path, event_col)
try:
    with st.spinner("Measuring every signal's next bars..."):
        study = app_state.run_events()
except InputError as exc:
    st.error(f"Cannot measure: {exc}")
    st.stop()
summary = study.summary
excess_word = "excess" if study.benchmark is not None else "mean"
horizon_cols = st.columns(len(summary))
for horizon_col, (h, row) in zip(horizon_cols, summary.iterrows(), strict=True):
    tested = row["mean_excess"] if study.benchmark is not None else row["mean"]
    horizon_col.metric(
        f"After {h} bar{'s' if h != 1 else ''}",
        f"{row['mean'] * 100:+.2f}%" if np.isfinite(row["mean"]) else "n/a",
        delta=f"{tested * 100:+.2f}% {excess_word}" if np.isfinite(tested) else None,
        delta_color="normal" if study.benchmark is not None else "off",
        help=f"Mean return of {row['events']:,} signals {h} bars after the entry; the delta: against "
        f"{'the ' + study.benchmark if study.benchmark else 'nothing'} over the same span.",
    )
    interval = f"95%: {row['ci_low'] * 100:+.2f} to {row['ci_high'] * 100:+.2f}%" if np.isfinite(row["ci_low"]) else ""
    better = f"better than {row['random_pctile']:.0f}% of random entries" if np.isfinite(row["random_pctile"]) else ""
    horizon_col.caption(" · ".join(t for t in (f"hit rate {row['hit_rate'] * 100:.0f}%", interval, better) if t))
overlap = summary["events"] - summary["independent"]
if overlap.max() > 0:
    worst = int(overlap.idxmax())
    st.caption(
        f"At {worst} bars, {int(overlap[worst]):,} of {int(summary.loc[worst, 'events']):,} signals overlap an "
        "earlier one on the same symbol: set a cooldown to count each move once."
    )
crossed = flagged_events(market, study)
if len(crossed):
    longest = study.horizons[-1]
    listed = "; ".join(
        f"{r.symbol} {r.entry_date:%Y-%m-%d} ({r.return_pct:+,.1f}%, {r.flagged})" for r in crossed.head(5).itertuples()
    )
    st.warning(
        f"{len(crossed):,} of {len(study.events):,} signals' next {longest} bars cross bars the Data page flagged "
        f"(likely splits or outliers): {listed}. Their returns may be the data's, not the rule's: back-adjust the "
        "splits or exclude these symbols on the Data page.",
        icon=":material/flag:",
    )
if study.open_events:
    st.caption(f"{study.open_events:,} signals are too recent for even the shortest horizon: listed, not measured.")
drift_col, histogram_col = st.columns(2)
drift_col.plotly_chart(charts.drift(study.path, "excess return" if study.benchmark else "return"), width="stretch")
with histogram_col:
    shown_h = st.selectbox(
        "Histogram of the returns after",
        list(summary.index),
        index=0,
        key="w.scanner.events_h",
        format_func=lambda h: f"{h} bar{'s' if h != 1 else ''}",
    )
    bench_mean = summary.loc[shown_h, "mean"] - summary.loc[shown_h, "mean_excess"] if study.benchmark else None
    returns = study.events[f"ret_{shown_h}"].to_numpy()
    counts, edges = np.histogram(returns[np.isfinite(returns)] * 100.0, bins=40)
    clicked = st.plotly_chart(
        charts.forward_histogram(counts, edges, shown_h, summary.loc[shown_h, "mean"], bench_mean),
        width="stretch",
        on_select="rerun",
        selection_mode="points",
        key=f"w.scanner.events_bins.{shown_h}",
    )
picked_bins = [p["point_index"] for p in clicked.selection.points] if clicked and clicked.selection else []
if picked_bins:
    low, high = edges[min(picked_bins)], edges[max(picked_bins) + 1]
    in_bin = study.events[(returns * 100.0 >= low) & (returns * 100.0 <= high)]
    shown_rows = in_bin[["symbol", "date", "entry_price", f"ret_{shown_h}"]].head(500)
    st.caption(
        f"{len(in_bin):,} signals returned {low:+.1f}% to {high:+.1f}% after {shown_h} bars"
        + (" (the first 500 listed)" if len(in_bin) > 500 else "")
        + ": pick one to see its chart."
    )
    picked_row = st.dataframe(
        shown_rows,
        hide_index=True,
        width="stretch",
        height=220,
        on_select="rerun",
        selection_mode="single-row",
        key=f"w.scanner.events_rows.{shown_h}.{low:.2f}",
        column_config={
            "date": st.column_config.DateColumn("signal", format="YYYY-MM-DD"),
            "entry_price": st.column_config.NumberColumn("entry", format="%.2f"),
            f"ret_{shown_h}": st.column_config.NumberColumn(f"return after {shown_h}", format="percent"),
        },
    )
    if picked_row.selection.rows:
        event_row = shown_rows.iloc[picked_row.selection.rows[0]]
        event_symbol, event_date = str(event_row.symbol), pd.Timestamp(event_row.date)
        at = market.dates.get_loc(event_date)
        window = (market.dates[max(at - 60, 0)], market.dates[min(at + shown_h + 20, len(market.dates) - 1)])
        event_marker = signal_markers([event_date], market.column(event_symbol))
        st.plotly_chart(charts.candles(market, event_symbol, markers=event_marker, focus=window), width="stretch")

factor = app_state.factor_of_rule(study.horizons)
if factor is not None:
    st.markdown(f"**Does a higher rank mean a higher return?** `{factor.factor}` cut into 5 quantiles among the hits")
    quantile_col, ic_col = st.columns(2)
    quantile_col.plotly_chart(charts.quantile_bars(factor.by_quantile), width="stretch")
    longest = factor.ic.index[-1]
    ic_col.plotly_chart(charts.monthly_ic(factor.ic_monthly[longest], longest), width="stretch")
    ic_row = factor.ic.loc[longest]
    st.caption(
        f"Information coefficient at {longest} bars: mean {ic_row['mean']:+.3f} (std {ic_row['std']:.3f}, "
        f"t {ic_row['t_stat']:+.2f}, {int(ic_row['bars']):,} bars); top minus bottom quantile "
        f"{factor.spread[longest] * 100:+.2f}%."
    )


def _pct(v: float) -> str:
    """A return as the table shows it: two decimals, signed, never "-0.00%"."""
    if not np.isfinite(v):
        return "n/a"
    shown = round(v * 100, 2)
    return f"{shown:+.2f}%" if shown else "0.00%"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


numbers = rule_numbers(app_state.rule())
if numbers:
    with st.expander("Sweep a rule number: does another value do better, or is it noise?"):
        titles = number_titles(app_state.rule())
        sweep_cols = st.columns(5)
        number = sweep_cols[0].selectbox(
            "Number",
            [n.index for n in numbers],
            format_func=lambda i: titles.get(i, numbers[i].context),
            key="w.scanner.sweep_number",
        )
        start = float(numbers[number].text)
        low = sweep_cols[1].number_input("From", value=max(start * 0.5, 1.0), key=f"w.scanner.sweep_lo.{number}")
        high = sweep_cols[2].number_input("To", value=start * 1.5, key=f"w.scanner.sweep_hi.{number}")
        step = sweep_cols[3].number_input(
            "Step", value=float(max(round(start * 0.1), 1)), min_value=0.01, key=f"w.scanner.sweep_st.{number}"
        )
        sweep_h = sweep_cols[4].selectbox(
            "Horizon", list(study.horizons), index=len(study.horizons) - 1, key="w.scanner.sweep_h"
        )
        tried = np.arange(low, high + step / 2, step) if step > 0 and high > low else np.array([])
        if not 2 <= len(tried) <= MAX_SWEEP:
            st.info(f"A sweep tries 2 to {MAX_SWEEP} values: widen the range or change the step (now {len(tried):,}).")
        elif st.button(f"Sweep {len(tried):,} values", key="w.scanner.sweep_run"):
            with st.spinner(f"Measuring {len(tried):,} versions of the rule..."):
                swept, best = app_state.sweep_rule_number(number, [float(v) for v in tried], int(sweep_h))
            what = "excess return" if study.benchmark else "return"
            st.plotly_chart(charts.sweep_line(swept, titles.get(number, "rule number"), what), width="stretch")
            if np.isfinite(best["best"]):
                st.caption(
                    f"Best: {best['best']:g} (t {best['t_stat']:+.2f}, p {_p(best['p'])}). After {best['tried']:,} "
                    f"tries the chance that the best of them looks this good by luck alone is about "
                    f"{best['p_deflated']:.1%} (Sidak: 1 - (1 - p)^tries)."
                )

table_view = summary.copy()
for column in ("mean", "median", "mean_excess", "se", "ci_low", "ci_high"):
    table_view[column] = [_pct(v) for v in summary[column]]
table_view["hit_rate"] = [f"{v * 100:.1f}%" if np.isfinite(v) else "n/a" for v in summary["hit_rate"]]
st.dataframe(
    table_view,
    width="stretch",
    column_config={
        "t_stat": st.column_config.NumberColumn("t", format="%.2f"),
        "random_pctile": st.column_config.NumberColumn("random pctile", format="%.0f"),
    },
)
st.download_button(
    "Download every signal's forward returns (CSV)",
    app_format.safe_csv(study.events, index=False),
    "events.csv",
    "text/csv",
)
