"""Optimize page: a grid over backtest parameters and rule numbers, ranked, mapped, and checked out of sample."""

import os

import streamlit as st

from app import dataset, links, widgets
from app import formatting as app_format
from app import state as app_state
from app.widgets import param_widget, value
from engine import InputError
from engine import params as table
from engine.metrics import LABELS
from engine.optimize import (
    METRICS,
    OBJECTIVES,
    apply_params,
    cell_combination,
    duration,
    estimate_work,
    heatmap_cells,
    space_values,
    stability,
)
from engine.plots import charts, report
from engine.rules import rule_numbers
from engine.search import check_constraint, column_name, require_steps, space_size

CONTINUOUS = "0: any value from 'from' to 'to' (random and tpe search); a grid needs a step."

st.title("Optimize")
market, rule = dataset.require_market(), app_state.rule()
try:
    base = widgets.bt_params()
    app_state.signals()
except InputError as exc:
    st.error(f"Fix the rule or the backtest settings first: {exc}")
    st.stop()
st.caption(f"Rule `{rule}` on {market.name}; every other setting comes from the Backtest page.")
if market.issues is not None and len(market.issues):
    flags = market.issues
    st.warning(
        f"This dataset has {len(flags):,} bars flagged as likely splits or outliers on "
        f"{flags.symbol.nunique():,} symbols: a combination can win by trading them. Check the best one's trades "
        "on the Backtest page, or back-adjust the splits or exclude the symbols on the Data page.",
        icon=":material/flag:",
    )

numbers = rule_numbers(rule)
labels = {p.path: app_format.param_title(p) for p in table.grid_keys().values()}
labels |= app_format.rule_number_titles(rule)
choices = [p.path for p in table.grid_keys().values() if not p.methods or base.sizing.method in p.methods]
choices += [f"rule.{n.index}" for n in numbers]
kept = [k for k in widgets.grid_keys() if k in choices]  # drop keys this rule or sizing method lacks
if kept != widgets.grid_keys():
    widgets.set_grid_keys(kept)
st.multiselect(
    "Parameters to vary", choices, key="grid.keys", format_func=lambda c: labels.get(c, c), persist_state=widgets.KEEP
)

grid, problems = {}, []
for name in widgets.grid_keys():
    widgets.grid_range(name)  # initialises from, to and step in the state
    key_cols = st.columns([3, 1, 1, 1])
    key_cols[0].markdown(f"**{labels.get(name, name)}**")
    lo = key_cols[1].number_input("from", key=f"grid.{name}.lo", format="%g", persist_state=widgets.KEEP)
    hi = key_cols[2].number_input("to", key=f"grid.{name}.hi", format="%g", persist_state=widgets.KEEP)
    step = key_cols[3].number_input(
        "step", min_value=0.0, key=f"grid.{name}.st", format="%g", persist_state=widgets.KEEP, help=CONTINUOUS
    )
    try:
        grid[name] = space_values(rule, name, lo, hi, step)
    except InputError as exc:
        problems.append(str(exc))

fit_cols = st.columns(4)
param_widget("optimize.objective", fit_cols[0])
min_trades = param_widget("optimize.min_trades", fit_cols[1])
mode = param_widget("optimize.mode", fit_cols[2])
if mode == "split":
    param_widget("optimize.split", fit_cols[3])
elif mode == "walk_forward":
    param_widget("optimize.train_bars", fit_cols[3])
    param_widget("optimize.test_bars", fit_cols[3])
    param_widget("optimize.anchored", fit_cols[3])
search_cols = st.columns(4)
search = param_widget("optimize.search", search_cols[0])
if search != "grid":
    param_widget("optimize.n_trials", search_cols[1])
    param_widget("optimize.seed", search_cols[2])
param_widget("optimize.time_budget_s", search_cols[3])
param_widget("optimize.constraint", help="e.g. take_profit > stop_loss; a rule number is rule_0, rule_1, ...")
try:
    check_constraint(value("optimize.constraint"), [column_name(k) for k in grid])
except InputError as exc:
    problems.append(str(exc))
trials = None if search == "grid" else int(value("optimize.n_trials"))
if search == "grid":
    try:
        require_steps(grid)
    except InputError as exc:
        problems.append(str(exc))
        trials = int(value("optimize.n_trials"))  # the estimate below stays a number
work = estimate_work(market, grid, mode, value("optimize.train_bars"), value("optimize.test_bars"), trials)
windows = f" × {work.windows:,} windows" if mode == "walk_forward" else ""
n = work.combinations
size = space_size(grid)
space = f" of the space's {size:,.0f}" if size < float("inf") else " of a continuous space"
space = f"{space}, drawn by {search} search" if search != "grid" else ""
st.markdown(
    f"**{n:,} combinations**{space}{windows} × {market.shape[1]:,} symbols × {market.shape[0]:,} bars: "
    f"about {duration(work.seconds)}"
)
try:
    work.check()
except InputError as exc:
    problems.append(str(exc))
for text in problems:
    st.error(text)
scheduler = os.environ.get("SCANNER_DASK_SCHEDULER") or None
if scheduler:
    st.caption(f"Runs on the Dask cluster at `{scheduler}`.")
if not grid:
    st.info("Choose at least one parameter to vary.")
    st.stop()
blocked = bool(problems)

clicked = st.button("Run optimisation", type="primary", disabled=blocked)
if (clicked or links.autorun("optimize")) and not blocked:
    bar = st.progress(0.0, text="Starting...")
    st.caption("Press **Stop** in the top-right corner (or change any setting) to cancel.")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"{done:,} of {total:,}")

    settings = {p.name: value(p.path) for p in table.group("optimize")}
    try:
        summary = {"combinations": n, "mode": mode}
        done = app_state.run_optimization(base, grid, settings, summary, progress=progress, scheduler=scheduler)
        app_state.set_optimization(done)
        bar.progress(1.0, text="Done" + (" (from the cache)" if app_state.cache_hit("optimize") else ""))
    except InputError as exc:
        st.error(str(exc))
        st.stop()

shown = app_state.optimization()
if shown is None:
    st.stop()
assert shown is not None  # st.stop() ended the run otherwise
out = shown
objective, keys = out.objective, out.keys
if out.grid is None:  # walk-forward
    kind = "anchored" if out.anchored else "rolling"
    st.subheader(f"Walk-forward ({kind} windows): re-optimised on each training window, tested on the next")
    table_ = out.ranked
    col = f"{objective}_oos"
    skipped = int(table_["note"].notna().sum()) if "note" in table_ else 0
    if skipped:
        fix = (
            f"lower **Min trades** (now {value('optimize.min_trades'):,}) or lengthen the training windows "
            f"(now {value('optimize.train_bars'):,} bars)"
        )
        if skipped == len(table_):
            st.warning(
                f"No training window had a combination with enough trades, so nothing was tested out of sample "
                f"and the figures below are empty: {fix}.",
                icon=":material/info:",
            )
        else:
            st.info(f"{skipped:,} of {len(table_):,} windows chose nothing (too few trades in training): {fix}.")
    wf_cards = st.columns(3)
    wf_cards[0].metric(
        "Walk-forward efficiency",
        app_format.share(out.efficiency),
        help="Out-of-sample annualised return of the stitched curve over the mean in-sample annualised "
        "return of the chosen parameters. Near 100%: the edge carried over; near 0 or below: it did "
        "not.",
    )
    stitched = out.oos_equity
    if stitched is not None and len(stitched) > 1:
        total = stitched["equity"].iloc[-1] / stitched["equity"].iloc[0] - 1
        wf_cards[1].metric("Stitched out-of-sample return", f"{total:,.2%}")
    if col in table_:
        wf_cards[2].metric(f"Mean out-of-sample {OBJECTIVES[objective]}", f"{table_[col].mean():,.2f}")
    st.plotly_chart(charts.stitched_equity(out.oos_equity, table_), width="stretch")
    st.plotly_chart(charts.chosen_parameters(table_, [k for k in keys if k in table_]), width="stretch")
    st.dataframe(table_, hide_index=True, width="stretch", column_config=app_format.grid_columns(table_, labels))
    st.stop()

result, ranked = out.grid, out.ranked
best = result.best()
if result.failed:
    st.warning(
        f"{result.failed:,} combinations were lost with a cluster worker; the {len(result.table):,} that "
        "finished are shown. Run again to fill them in."
    )
elif result.cancelled:
    st.warning(f"Cancelled: {len(result.table):,} combinations finished.")
elif result.out_of_time:
    st.warning(f"The time budget ended the search after {len(result.table):,} trials; they are ranked below.")
st.caption(f"{len(result.table):,} combinations in {result.seconds:,.2f} s ({result.combos_per_second:,.0f}/s).")
if best is None:
    st.warning(f"No combination had {result.min_trades}+ trades; lower **Min trades** or widen the grid.")
else:
    st.success(
        "Best in-sample: "
        + ", ".join(f"{labels.get(k, k)} = {best[k]:g}" for k in keys)
        + f" → {OBJECTIVES[objective]} {best[objective]:,.2f}"
    )
    fit = result.overfitting()
    split_cards = st.columns(4)
    split_cards[0].metric(
        "Deflated Sharpe",
        app_format.share(fit["deflated_sharpe"]),
        help="Probability that the best Sharpe is above what the best of this many combinations would reach "
        "by luck (Bailey and Lopez de Prado 2014). Above 95%: likely real.",
    )
    split_cards[1].metric(
        "Probability of overfitting",
        app_format.share(fit["pbo"]),
        help=f"How often the in-sample winner ranks below the median out of sample, over splits of "
        f"{fit['n_blocks']} blocks of time (CSCV, Bailey et al. 2015). Above 50%: overfit.",
    )
    split_cards[2].metric(
        "Probabilistic Sharpe",
        app_format.share(fit["psr"]),
        help="Probability that the best combination's true Sharpe is above 0, from its length, skew and "
        "kurtosis, with no correction for the search.",
    )
    split_cards[3].metric(
        "Combinations tried",
        f"{fit['n_trials']:,}",
        help="Every evaluated trial counts in the deflated Sharpe and the probability of overfitting.",
    )
    warn = fit["pbo"] >= 0.5 or fit["deflated_sharpe"] < 0.5
    (st.warning if warn else st.info)(fit["verdict"], icon=":material/troubleshoot:")

    chosen = result.best_params() or {}

    def best_tear_sheet() -> str:
        best_rule, params = apply_params(rule, base, chosen)
        return report.tear_sheet(
            market,
            best_rule,
            app_state.backtest_of(best_rule, params),
            fit,
            title="Tear sheet of the best combination",
        )

    st.download_button(
        "Download the best combination's tear sheet (HTML)",
        best_tear_sheet,
        "tear_sheet_best.html",
        "text/html",
        on_click="ignore",
        help="Its full backtest with the overfitting figures above.",
    )
    if st.button("Use these in the Backtest page"):
        app_state.apply_best(chosen)
        links.open_next("backtest")  # it runs at once there
        st.switch_page("../pages/backtest.py")
if result.search != "grid" and len(result.table):
    eligible = result.table[objective].where(result.table["n_trades"] >= result.min_trades)
    st.plotly_chart(charts.best_so_far(eligible.to_numpy(float), OBJECTIVES[objective]), width="stretch")
# Keyed, so moving the heatmap's slice slider (a rerun) keeps the reader on the heatmap.
tab_table, tab_map, tab_sens = st.tabs(
    ["All combinations", "Heatmap", "Sensitivity"], key="w.optimize.tab", on_change="rerun"
)
with tab_table:
    st.dataframe(
        ranked, width="stretch", height=360, hide_index=True, column_config=app_format.grid_columns(ranked, labels)
    )
with tab_map:
    if len(keys) >= 2:
        map_cols = st.columns(4)
        for name, default in (("w.optimize.x", keys[0]), ("w.optimize.y", keys[1])):
            if widgets.widget(name) not in keys:
                widgets.set_widget(name, default)
        if widgets.widget("w.optimize.z") not in METRICS:
            widgets.set_widget("w.optimize.z", objective)

        def named(k: str) -> str:
            return labels.get(k, k)

        x = map_cols[0].selectbox("x", keys, key="w.optimize.x", persist_state=widgets.KEEP, format_func=named)
        y = map_cols[1].selectbox("y", keys, key="w.optimize.y", persist_state=widgets.KEEP, format_func=named)
        z = map_cols[2].selectbox(
            "Metric", METRICS, key="w.optimize.z", persist_state=widgets.KEEP, format_func=lambda m: LABELS.get(m, m)
        )
        widgets.seed_widget("w.optimize.others", "best")
        others = map_cols[3].radio(
            "Other parameters", ["best", "mean"], horizontal=True, key="w.optimize.others", persist_state=widgets.KEEP
        )
        fixed: dict[str, float] = {}
        rest = [k for k in keys if k not in (x, y)]
        if rest and x != y:
            slice_cols = st.columns([1, 3])
            third = slice_cols[0].selectbox("Slice at", rest, key="w.optimize.slice_key")
            values = sorted(result.table[third].dropna().unique().tolist())
            if widgets.widget("w.optimize.slice") not in values:
                widgets.set_widget("w.optimize.slice", values[0])
            fixed[third] = float(
                slice_cols[1].select_slider(
                    f"{labels.get(third, third)}", values, key="w.optimize.slice", format_func=lambda v: f"{v:g}"
                )
            )
        view = st.radio(
            "Colour by",
            ["value", "stability (3 x 3 neighbourhood mean)"],
            horizontal=True,
            key="w.optimize.view",
            help="Stability averages each cell with its neighbours: prefer a high plateau to a lone spike.",
        )
        if x != y:
            cells = heatmap_cells(result.table, x, y, z, fixed, others)
            heat = stability(cells) if view.startswith("stability") else cells
            where = ", ".join(f"{labels.get(k, k)} = {v:g}" for k, v in fixed.items())
            title = f"{LABELS.get(z, z)}: {view.split(' (')[0]}" + (f" at {where}" if where else "")
            event = st.plotly_chart(
                charts.grid_heatmap(heat, x, y, z, title, sampled=result.search != "grid", names=labels),
                width="stretch",
                on_select="rerun",
                selection_mode="points",
                key="w.optimize.map",
            )
            st.caption("Click a cell to open that combination's full backtest.")
            points = event.selection.points if event and event.selection else []
            if points:
                picked = {x: float(points[0]["x"]), y: float(points[0]["y"]), **fixed}
                combo = cell_combination(result.table, objective, keys, picked)
                if combo is not None:
                    app_state.apply_best(combo)
                    links.open_next("backtest")
                    widgets.forget_widget("w.optimize.map")  # a click opens the backtest once, not on every visit
                    st.switch_page("../pages/backtest.py")
        if out.mode == "split":
            st.plotly_chart(charts.in_vs_out(ranked, objective), width="stretch")
    else:
        st.info("Vary two or more parameters for a heatmap.")
with tab_sens:
    st.plotly_chart(charts.sensitivity(result.table, keys, objective), width="stretch")
st.download_button("Download all combinations (CSV)", app_format.safe_csv(ranked, index=False), "grid.csv", "text/csv")
