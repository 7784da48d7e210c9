"""Backtest page: the scanner's current signals, settings whose every edit reruns (up to a size), results in
depth."""

import streamlit as st

from app import dataset, links, whatif, widgets
from app import formatting as app_format
from app import state as app_state
from app.widgets import param_widget
from engine import InputError
from engine import params as table
from engine.metrics import LABELS
from engine.plots import charts, report
from engine.plots.format import flag_banner, metric_delta, skip_reasons
from engine.rotation import weights_pct
from engine.rules import EXIT_PRESETS, RuleError
from engine.server import service

st.title("Backtest")
market = dataset.require_market()
try:
    signals = app_state.signals()
except RuleError as exc:
    st.error(f"The scanner rule cannot run: {exc}")
    st.page_link("../pages/scanner.py", label="Fix the rule on the Scanner page →", icon=":material/search:")
    st.stop()
st.caption(f"Signals: **{signals.count:,}** from `{app_state.rule()}` on {market.name}.")
if signals.count == 0:
    st.warning("The scanner's rule has no signals on this dataset, so there is nothing to backtest.")
    st.page_link("../pages/scanner.py", label="Choose a rule on the Scanner page →", icon=":material/search:")
    st.stop()

# At 1440 x 900 the settings (left) and the key result (cards and a compact equity curve, right) share the
# screen: an edit and what it changed are seen together, without scrolling.
settings_col, results_col = st.columns([2, 3], gap="large")
SETTINGS_HEIGHT = 660  # px: the part of a 900 px high window below the page's title
FEW_TRADES = 20  # below this many trades the per-trade figures are greyed and say "few trades"
PER_TRADE = ("win_rate_pct", "profit_factor")
CARDS = ("total_return_pct", "cagr_pct", "sharpe", "sortino", "max_drawdown_pct", *PER_TRADE, "n_trades")
FLAG_AFFECTED = CARDS[:-1]  # every card's figure but the count moves with a trade across a flagged bar
# The results column stays in view while the settings column scrolls (an edit deep in an expander lands its
# numbers on screen); on a narrow window the columns stack and nothing sticks.
st.html(
    "<style>[class*='st-key-few-'] [data-testid='stMetricValue'] {color: #8b949e;}"
    "@media (min-width: 1000px) {div[data-testid='stColumn']:has(.st-key-w-backtest-results)"
    "{position: sticky; top: 4.5rem; align-self: flex-start;}}"
    # four cards a row in a laptop's results column: figures a size smaller, so none is cut ("-14.8…")
    ".st-key-w-backtest-results [data-testid='stMetricValue'] {font-size: 1.75rem;}"
    ".st-key-w-backtest-results [data-testid='stMetricLabel'] p {white-space: normal;}</style>"
)
# The settings scroll in a box of their own, a laptop screen high: whichever field is edited, the row (and the
# results in it) stays where it is.
with settings_col, st.container(height=SETTINGS_HEIGHT, border=False, key="w.backtest.settings"):
    method = param_widget("sizing.method")
    sizing_inputs = [p for p in table.group("sizing") if p.methods]
    limits = [p.path for p in table.group("limits")]
    active = [p.label.lower() for p in table.group("limits") if p.off and widgets.value(p.path)]

    def use_exit_preset() -> None:
        choice = widgets.widget("w.backtest.exit_preset")
        if choice in EXIT_PRESETS:
            widgets.set_value("exit_rule", EXIT_PRESETS[choice])

    st.selectbox(
        "Exit rule presets",
        ["Choose a preset...", *EXIT_PRESETS],
        key="w.backtest.exit_preset",
        on_change=use_exit_preset,
        help="Fills the exit rule below; edit it there.",
    )

    def _grid(paths: tuple[str, ...]) -> None:
        """Widgets for these parameters, two to a row (the settings column is narrow)."""
        for i, path in enumerate(paths):
            if i % 2 == 0:
                cols = st.columns(2)
            param_widget(path, cols[i % 2])

    _grid(
        (
            "initial_capital",
            "signal_type",
            "max_positions",
            "holding_period",
            "stop_loss",
            "take_profit",
            "trailing_stop",
            "trailing_atr",
        )
    )
    param_widget(
        "exit_rule",
        help="A scanner rule, e.g. rsi(14) > 70: true at a close (from the entry bar on) "
        "exits at the next open, before that bar's stops and targets. Empty: no exit rule.",
    )
    with st.expander(f"Shape: {app_format.shape_summary(widgets.values())}", key="w.backtest.shape"):
        _grid(("rebalance", "rebalance_bars", "hold_top", "weighting"))
        _grid(("rebalance_band",))
        st.caption(
            "Rotation: at each rebalance bar's close the rule's hits are ranked by its `rank by` (e.g. "
            "`close > sma(200) rank by roc(126)`), the top ones are the target, and at the next open the others "
            "are sold and the target bought at its weights. Stops, the holding period and the limits still apply."
        )
    with st.expander(f"Orders: {app_format.orders_summary(widgets.values())}", key="w.backtest.orders"):
        _grid(("entry_order", "entry_offset_pct", "entry_offset_atr", "entry_valid_bars"))
        _grid(("max_adds", "add_min_bars", "partial_exits", "breakeven_after_partial"))
        param_widget("add_rule")
        _grid(("on_opposite",))
        param_widget(
            "short_rule", help="With Direction both: its signals open shorts (the Scanner's rule opens longs)."
        )
    with st.expander(f"Costs: {app_format.costs_summary(widgets.values())}", key="w.backtest.costs"):
        _grid(
            (
                "commission",
                "commission_fixed",
                "commission_min",
                "slippage_bps",
                "borrow_pct",
                "margin_interest_pct",
                "cash_interest_pct",
            )
        )
    bench_key = widgets.key("benchmark")
    if widgets.value("benchmark") not in ("", *market.symbols):  # a symbol this dataset lacks (a link)
        st.warning(
            f"The benchmark `{str(widgets.value('benchmark'))[:40]}` is not a symbol of {market.name}; "
            "using equal weight of all symbols. Choose another under **Benchmark**."
        )
        widgets.set_value("benchmark", "")
    st.selectbox(
        "Benchmark",
        ["", *market.symbols],
        key=bench_key,
        persist_state=widgets.KEEP,
        format_func=lambda s: s or "Equal weight of all symbols",
        help="What alpha, beta, the information ratio and the buy-and-hold curve compare with.",
    )
    with st.expander(
        f"Sizing and leverage: {method.replace('_', ' ')}", expanded=method != "equal_weight", key="w.backtest.sizing"
    ):
        cols = st.columns(4)
        for i, p in enumerate(q for q in sizing_inputs if method in q.methods):
            param_widget(p.path, cols[i % 4])
        cols = st.columns(4)
        for col, path in zip(
            cols, ("allow_leverage", "max_leverage", "shrink_unfunded", "fractional_shares"), strict=True
        ):
            param_widget(path, col)
    # Keyed: an expander's label says what is set, and a changed label must not close it mid-edit.
    with st.expander("Risk limits: " + (", ".join(active) + " on" if active else "all off"), key="w.backtest.limits"):
        no_sectors = market.sectors is None
        limit_cols = st.columns(2)
        for i, path in enumerate(limits):
            off_here = path == "limits.max_sector_pct" and no_sectors
            param_widget(
                path,
                limit_cols[i % 2],
                disabled=off_here,
                help="This dataset has no sector column, so the sector limit is off." if off_here else None,
            )
        st.caption(
            "An empty box (Off) switches a limit off. Limits apply when a position opens; each cut or skip is listed."
        )

    follows = app_state.follows_edits()  # results follow every edit up to a size; past it, edits wait for a button
    clicked = not follows and st.button("Run backtest", type="primary", key="w.backtest.run")
    if not follows:
        st.caption(
            f"{market.shape[0] * market.shape[1]:,} symbol-bars, over the {app_state.FOLLOW_CELLS:,} that rerun on "
            "every edit: make your edits, then press **Run backtest**."
        )

with results_col, st.container(key="w.backtest.results"):
    result = app_state.result()
    if clicked or links.autorun("backtest") or (follows and not app_state.is_current()):
        try:
            with st.spinner("Running the backtest..."):
                result = app_state.run_backtest()
        except InputError as exc:
            st.error(f"Cannot run: {exc}")
            st.stop()
    elif result is not None and not app_state.is_current():
        st.info("The rule, data or parameters changed since these results: press **Run backtest** to update.")
    if result is None:
        st.info("Set the parameters and press **Run backtest**.")
        st.stop()
    assert result is not None  # st.stop() ended the run otherwise

    m = result.metrics
    base, base_name = whatif.baseline()
    if base is result:
        base = None  # the pinned run itself: nothing to compare
    flagged = flag_banner(market, result.positions)
    few = m["n_trades"] < FEW_TRADES
    for i, metric in enumerate(CARDS):
        if i % 4 == 0:
            cols = st.columns(4)
        delta = metric_delta(metric, m[metric], base.metrics.get(metric)) if base is not None else None
        notes = [f"Change against {base_name}."] if delta else []
        label = LABELS[metric]
        if flagged and metric in FLAG_AFFECTED:  # the banner below qualifies this figure
            label += " ⚑"
            notes.append("Includes trades across bars the Data page flagged (see the warning below the cards).")
        greyed = few and metric in PER_TRADE
        if greyed:
            label += " · few trades"
            notes.append(f"Only {m['n_trades']:,} trades: too few for this figure to mean much.")
        with cols[i % 4].container(key=f"few-{metric}" if greyed else None):
            st.metric(
                label,
                app_format.metric_text(metric, m[metric]),
                delta=delta,
                delta_color="off" if metric == "n_trades" or greyed else "normal",
                help=" ".join(notes) or None,
            )
    if flagged:  # beside the figures it qualifies
        st.warning(flagged, icon=":material/flag:")
    c1, c2 = st.columns([3, 2], vertical_alignment="center")
    if base is not None:
        c1.caption(f"Deltas (pp: percentage points) and the grey equity line: against {base_name}.")
        if result.same_trades(base):
            fired = result.params.exit_rule and not (result.trades.exit_reason == "exit_rule").any()
            why = ": the exit rule fired 0 times" if fired else " (the edit did not touch any trade)"
            st.info(f"No trade changed against {base_name}{why}.")
    if whatif.is_pinned():
        c2.button("Unpin baseline", on_click=whatif.set_pin, args=(False,), key="w.backtest.unpin")
    else:
        c2.button(
            "Pin as baseline",
            on_click=whatif.set_pin,
            args=(True,),
            key="w.backtest.pin",
            help="Compare every later run with this one (default: with the previous run). The pin is kept for "
            "you on this dataset after a reload, and the page's link carries it.",
        )
    # With a baseline, its curve and the strategy's share the scale (a buy and hold far above would squash them).
    show_bench_key = "w.backtest.benchmark_with_base" if base is not None else "w.backtest.benchmark"
    widgets.seed_widget(show_bench_key, base is None)
    views = st.columns([2, 3, 2])
    show_bench = views[0].toggle(
        "Buy & hold", key=show_bench_key, help="The benchmark's buy and hold on the chart.", persist_state=widgets.KEEP
    )
    relative = base is not None and views[1].toggle(
        "Relative to baseline",
        key="w.backtest.relative",
        help="The strategy's lead over the baseline in %: a change of a point is visible however far both grew.",
        persist_state=widgets.KEEP,
    )
    st.plotly_chart(
        charts.equity(
            result.equity,
            result.params.benchmark,
            base.equity.equity if base is not None else None,
            height=360,
            show_benchmark=show_bench,
            relative=relative,
        ),
        width="stretch",
    )
    strip = {r.id: r for r in whatif.strip()}
    if len(strip) > 1:

        def _restore() -> None:
            picked = widgets.widget("w.backtest.whatif")
            widgets.set_widget("w.backtest.whatif", None)
            if picked in strip:
                whatif.restore(strip[picked].values, strip[picked].rule)

        def _run_label(run_id: str) -> str:
            r = strip[run_id]
            return f"{r.label} · {app_format.metric_text('total_return_pct', r.metrics.get('total_return_pct'))}"

        with st.container(height=130 if len(strip) > 6 else "content", border=False, key="w.backtest.strip"):
            st.pills(
                f"What-if: your {len(strip):,} runs on this data over the last day (click one to restore its settings)",
                list(strip),
                format_func=_run_label,
                key="w.backtest.whatif",
                on_change=_restore,
            )
run_params = result.params
st.caption(
    f"Final equity **{m['final_equity']:,.2f}** from {run_params.initial_capital:,.2f} · "
    f"{run_params.sizing.method.replace('_', ' ')} sizing · risk limits: "
    f"{', '.join(run_params.limits.active()) or 'none'}."
)
for text in result.warnings:
    (st.error if text.startswith("Ruined on") else st.warning)(text)
rotation = run_params.rebalance != "off"
if rotation:
    turnover = result.turnover
    st.caption(
        f"Rotation: **{len(turnover):,}** rebalances, average turnover **{turnover.turnover_pct.mean():,.1f}%**, "
        f"fees **{turnover.fees.sum():,.2f}**. See **Holdings**."
        if len(turnover)
        else "Rotation: no rebalance bought anything (no hits at the rebalance bars, or every buy was skipped)."
    )
    if run_params.holding_period or run_params.stop_loss or run_params.take_profit:
        st.caption(
            "Exits still apply between rebalances (holding period, stop, target): a position they close waits "
            "for the next rebalance. Switch them off (empty boxes) to hold from one rebalance to the next."
        )
if len(result.events):
    reasons = skip_reasons(result.skipped())
    cuts = int((result.events["action"] == "cut").sum())
    st.caption(
        f"{m['signals_skipped']:,} signal{'' if m['signals_skipped'] == 1 else 's'} skipped (or their orders "
        f"expired) and {cuts:,} size{'' if cuts == 1 else 's'} cut: {reasons}. "
        "See **Skips and cuts**."
    )

# Keyed, so a button inside a tab (or a new result) keeps the reader on that tab.
names = [
    "Risk over time",
    "Trades",
    "Symbol story",
    "Monthly returns",
    "Luck or skill?",
    "Skips and cuts",
    "All metrics",
]
tabs = st.tabs([*names[:3], *(["Holdings"] if rotation else []), *names[3:]], key="w.backtest.tab", on_change="rerun")
tab_risk, tab_trades, tab_story, *tab_held, tab_months, tab_luck, tab_events, tab_all = tabs
# Lazy: only the tab being read runs (the cards and the equity first), so an edit's rerun is short.
if tab_story.open:
    with tab_story:
        traded = result.positions.symbol.astype(str).value_counts()
        if traded.empty:
            st.info("No trades: nothing to draw.")
        else:
            story = st.selectbox(
                "Symbol",
                list(traded.index),
                key=f"story.{dataset.data_id()}",
                format_func=lambda s: f"{s} ({traded[s]:,} trade{'s' if traded[s] != 1 else ''})",
            )
            st.plotly_chart(
                charts.symbol_story(
                    market,
                    story,
                    result.positions,
                    result.equity,
                    app_state.indicator_series(),
                    run_params.stop_loss,
                    run_params.take_profit,
                    rule=app_state.rule(),
                ),
                width="stretch",
            )
            st.caption(
                "Every trade of the symbol (triangles: entries; crosses: exits; green won, red lost), its stop and "
                "target levels while held, and the strategy's equity with its peak, maximum drawdown (red) and "
                "longest drawdown (orange). Zoom one panel and the other follows."
            )
if tab_held and tab_held[0].open:
    with tab_held[0]:
        weights = weights_pct(result.holdings, market.close, result.equity.equity.to_numpy())
        st.plotly_chart(charts.holdings(weights, result.turnover.index), width="stretch")
        per_rebalance = result.turnover.reset_index()
        st.dataframe(
            per_rebalance,
            hide_index=True,
            width="stretch",
            height=300,
            column_config=app_format.two_decimal_columns(per_rebalance)
            | {
                "date": app_format.DATE,
                "turnover_pct": st.column_config.NumberColumn("turnover %", format="%.1f"),
                "symbols": st.column_config.TextColumn("held after it", width="large"),
            },
        )
        st.caption(
            "Each rebalance trades at the open after its bar. Turnover is half the value traded over the "
            "portfolio's value (replacing every holding is 100%); the chart's gaps are cash."
        )
if tab_risk.open:
    with tab_risk:
        st.plotly_chart(
            charts.rolling_risk(result.equity, 126, m["periods_per_year"], run_params.risk_free_pct), width="stretch"
        )
if tab_trades.open:
    with tab_trades:
        trades = result.trades.drop(columns=["entry_bar", "exit_bar"])
        st.dataframe(
            trades,
            width="stretch",
            hide_index=True,
            height=300,
            column_config=app_format.trade_columns(result.params.fractional_shares),
        )
        positions = result.positions
        if len(trades) > len(positions):
            st.caption(
                f"{len(trades):,} exit fills of {len(positions):,} positions (partial exits): "
                "the metrics count positions."
            )
        if len(positions):
            pick = st.selectbox(
                "Show trade",
                range(len(positions)),
                key=f"trade_pick.{app_state.result_id()}",  # per result
                format_func=lambda i: (
                    f"#{i + 1} {positions.symbol[i]} {positions.direction[i]} {positions.entry_date[i].date()} → "
                    f"{positions.exit_date[i].date()} ({positions.return_pct[i]:+.2f}%, "
                    f"{positions.exit_reason[i]})"
                ),
            )
            t = positions.iloc[pick]
            markers = charts.trade_markers(t, result.trades[result.trades.position_id == t.position_id])
            st.plotly_chart(
                charts.candles(market, t.symbol, markers=markers, focus=(t.entry_date, t.exit_date)), width="stretch"
            )
            st.caption(
                f"While held: worst excursion (MAE) **{t.mae_pct:+.2f}%**, best (MFE) **{t.mfe_pct:+.2f}%** "
                "from the entry fill."
            )
            st.plotly_chart(charts.excursions(positions), width="stretch")
if tab_months.open:
    with tab_months:
        st.plotly_chart(charts.monthly_returns(result.equity), width="stretch")
if tab_luck.open:
    with tab_luck:
        st.metric(
            "Probabilistic Sharpe (true Sharpe > 0)",
            app_format.metric_text("psr_pct", m["psr_pct"]),
            help="From the length, skewness and kurtosis of the daily returns (Bailey and Lopez de Prado 2012).",
        )
        st.caption(
            "The random-entry test: as many trades with the same holding times as this backtest, on random "
            "symbols and dates, many times. If this rule's trades do no better than most of them, its result "
            "is the market's, not the rule's."
        )
        # Once asked for, the test follows every new result.
        if st.button("Run the random-entry test") or app_state.luck_test_wanted():
            with st.spinner("Drawing random strategies..."):
                app_state.set_luck_test(service.luck_test(market, result))
        test = app_state.luck_test()
        if test is not None:
            share = app_format.share(test["p_value"])
            (st.success if test["p_value"] < 0.05 else st.warning)(
                f"{share} of {len(test['random']):,} random strategies did at least as well as this rule "
                f"(p-value). {'Unlikely to be luck.' if test['p_value'] < 0.05 else 'It could be luck or the market.'}"
            )
            st.plotly_chart(charts.null_histogram(test["random"], test["sharpe"]), width="stretch")
if tab_events.open:
    with tab_events:
        st.caption(
            f"{len(result.events):,} signals a limit skipped or cut, orders that expired unfilled (value: the "
            "order's level) and signals in the ATR warm-up: value and limit are % of equity (positions, sectors), "
            "correlation, currency (cash) or open positions."
        )
        st.dataframe(
            result.events,
            width="stretch",
            hide_index=True,
            height=300,
            column_config=app_format.two_decimal_columns(result.events),
        )
if tab_all.open:
    with tab_all:
        st.dataframe(
            app_format.metrics_table(m, base.metrics if base is not None else None),
            hide_index=True,
            width="stretch",
            column_config={
                "metric": st.column_config.TextColumn(width="medium"),
                "value": st.column_config.TextColumn(width="small"),
            },
        )
d1, d2, d3 = st.columns(3)
d1.download_button("Download trades (CSV)", app_format.safe_csv(result.trades, index=False), "trades.csv", "text/csv")
d2.download_button("Download equity (CSV)", app_format.safe_csv(result.equity), "equity.csv", "text/csv")
rule_now, shown = app_state.rule(), result
d3.download_button(
    "Download tear sheet (HTML)",
    lambda: report.tear_sheet(market, rule_now, shown),
    "tear_sheet.html",
    "text/html",
    on_click="ignore",
    help="One file with every chart, table and figure; opens offline.",
)
