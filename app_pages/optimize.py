"""Optimize page: a grid over backtest parameters and rule numbers, ranked, mapped, and checked out of sample."""

import os

import numpy as np
import streamlit as st

import app_state
import charts
from engine import DataError
from engine.filters import RuleError, rule_numbers
from engine.optimize import OBJECTIVES, grid_size, in_out_of_sample, optimize, walk_forward

st.title("Optimize")
market, rule, base = app_state.market(), app_state.rule(), None
try:
    base = app_state.bt_params()
    app_state.signals()
except (DataError, RuleError) as exc:
    st.error(f"Fix the rule or the backtest settings first: {exc}")
    st.stop()
st.caption(f"Rule `{rule}` on {market.name}; every other setting comes from the Backtest page.")

# name -> (default from, to, step)
CHOICES = {"stop_loss": (2.0, 10.0, 2.0), "take_profit": (5.0, 25.0, 5.0), "holding_period": (5, 40, 5),
           "max_positions": (5, 20, 5)}  # fmt: skip
SIZING_CHOICES = {
    "fixed_fractional": {"risk_pct": (0.5, 2.0, 0.5)},
    "atr_risk": {"risk_pct": (0.5, 2.0, 0.5), "atr_multiplier": (1.0, 4.0, 1.0)},
    "kelly": {"kelly_multiplier": (0.25, 1.0, 0.25), "kelly_cap_pct": (10.0, 40.0, 10.0)},
    "volatility_target": {"vol_target_pct": (5.0, 20.0, 5.0)},
    "fixed_amount": {"fixed_amount": (5_000.0, 20_000.0, 5_000.0)},
}
CHOICES |= {f"sizing.{name}": r for name, r in SIZING_CHOICES.get(base.sizing.method, {}).items()}
numbers = rule_numbers(rule)
for n in numbers:
    v = float(n.text)
    CHOICES[f"rule.{n.index}"] = (v * 0.5, v * 1.5, max(abs(v) * 0.25, 1.0 if "." not in n.text else 0.1))
labels = {f"rule.{n.index}": f"rule: {n.context}" for n in numbers}

ss = st.session_state
chosen = st.multiselect("Parameters to vary", list(CHOICES), default=[c for c in ("stop_loss", "take_profit")
                        if c in CHOICES], format_func=lambda c: labels.get(c, c), key="opt_keys")  # fmt: skip
grid = {}
for key in chosen:
    lo, hi, step = CHOICES[key]
    c = st.columns([3, 1, 1, 1])
    c[0].markdown(f"**{labels.get(key, key)}**")
    start = c[1].number_input("from", value=float(lo), key=f"opt_{key}_lo", format="%g")
    stop = c[2].number_input("to", value=float(hi), key=f"opt_{key}_hi", format="%g")
    step_v = c[3].number_input("step", value=float(step), min_value=1e-6, key=f"opt_{key}_st", format="%g")
    values = np.round(np.arange(start, stop + step_v / 2, step_v), 6)
    if key in ("holding_period", "max_positions", "sizing.kelly_min_trades") or (
        key.startswith("rule.") and "." not in numbers[int(key.split(".")[1])].text
    ):
        values = np.unique(np.round(values).astype(int))
    grid[key] = values.tolist()

c = st.columns(4)
objective = c[0].selectbox(
    "Objective",
    list(OBJECTIVES),
    index=list(OBJECTIVES).index("sharpe"),
    format_func=OBJECTIVES.get,
    key="opt_objective",
)
min_trades = int(c[1].number_input("Min trades", 0, 100_000, 20, key="opt_min_trades"))
mode = c[2].selectbox("Overfitting check", ["In/out-of-sample split", "Walk-forward", "None (all bars)"],
                      key="opt_mode")  # fmt: skip
if mode == "In/out-of-sample split":
    split = c[3].slider("In-sample share", 0.5, 0.9, 0.7, 0.05, key="opt_split")
elif mode == "Walk-forward":
    train = int(c[3].number_input("Train bars", 60, 5000, 504, key="opt_train"))
    test = int(st.number_input("Test bars", 20, 2000, 126, key="opt_test"))
n = grid_size(grid)
st.markdown(f"**{n:,} combinations** × {market.shape[1]} symbols × {market.shape[0]:,} bars")
scheduler = os.environ.get("SCANNER_DASK_SCHEDULER") or None
if scheduler:
    st.caption(f"Runs on the Dask cluster at `{scheduler}`.")
if not grid:
    st.info("Choose at least one parameter to vary.")
    st.stop()

if st.button("Run optimisation", type="primary"):
    bar = st.progress(0.0, text="Starting...")
    st.caption("Press **Stop** in the top-right corner (or change any setting) to cancel.")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"{done:,} of {total:,}")

    params = {"base": base, "grid": grid, "objective": objective, "min_trades": min_trades, "mode": mode}
    try:
        if mode == "Walk-forward":
            params |= {"train": train, "test": test}
            compute = lambda: walk_forward(market, rule, base, grid, train, test, objective, min_trades,  # noqa: E731
                                           progress, scheduler)  # fmt: skip
        elif mode == "In/out-of-sample split":
            params["split"] = split
            compute = lambda: in_out_of_sample(
                market,
                rule,
                base,
                grid,
                split,
                objective=objective,  # noqa: E731
                min_trades=min_trades,
                progress=progress,
                scheduler=scheduler,
            )
        else:
            compute = lambda: optimize(market, rule, base, grid, objective, min_trades, progress=progress,  # noqa: E731
                                       scheduler=scheduler)  # fmt: skip
        out = app_state.cached_run("optimize", params, compute, lambda r: {"combinations": n, "mode": mode})
        ss.opt = (mode, objective, list(grid), out)
        bar.progress(1.0, text="Done" + (" (from the cache)" if ss.get("optimize_cache_hit") else ""))
    except (DataError, RuleError) as exc:
        st.error(str(exc))
        st.stop()

if not ss.get("opt"):
    st.stop()
mode, objective, keys, out = ss.opt
if mode == "Walk-forward":
    st.subheader("Walk-forward: re-optimised on each training window, tested on the next")
    st.dataframe(out, hide_index=True, width="stretch")
    col = f"{objective}_oos"
    if col in out:
        st.metric(f"Mean out-of-sample {OBJECTIVES[objective]}", f"{out[col].mean():.2f}")
        st.bar_chart(out.set_index("test_start")[col])
    st.stop()

result, table = (out[0], out[1]) if isinstance(out, tuple) else (out, out.ranked())
best = result.best()
if result.cancelled:
    st.warning(f"Cancelled: {len(result.table):,} combinations finished.")
st.caption(f"{len(result.table):,} combinations in {result.seconds:.2f} s ({result.combos_per_second:,.0f}/s).")
if best is None:
    st.warning(f"No combination had {result.min_trades}+ trades; lower **Min trades** or widen the grid.")
else:
    st.success("Best in-sample: " + ", ".join(f"{labels.get(k, k)} = {best[k]:g}" for k in keys) +
               f" → {OBJECTIVES[objective]} {best[objective]:.2f}")  # fmt: skip
    if st.button("Use these in the Backtest page"):
        app_state.apply_best({k: float(best[k]) for k in keys})
        st.switch_page("app_pages/backtest.py")
tab_table, tab_map, tab_sens = st.tabs(["All combinations", "Heatmap", "Sensitivity"])
with tab_table:
    st.dataframe(table, width="stretch", height=360)
with tab_map:
    if len(keys) >= 2:
        c = st.columns(3)
        x = c[0].selectbox("x", keys, index=0, key="opt_x")
        y = c[1].selectbox("y", keys, index=1, key="opt_y")
        others = c[2].radio("Other parameters", ["best", "mean"], horizontal=True, key="opt_others")
        if x != y:
            st.plotly_chart(charts.grid_heatmap(result.table, x, y, objective, others), width="stretch")
        if isinstance(out, tuple):
            st.plotly_chart(charts.in_vs_out(table, objective), width="stretch")
    else:
        st.info("Vary two or more parameters for a heatmap.")
with tab_sens:
    st.plotly_chart(charts.sensitivity(result.table, keys, objective), width="stretch")
st.download_button("Download all combinations (CSV)", table.to_csv(index=False), "grid.csv", "text/csv")
