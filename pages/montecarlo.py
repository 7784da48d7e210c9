"""Monte Carlo page: resample the last backtest's trades to see how much of its result could be luck."""

import streamlit as st

from app import dataset, links, widgets
from app import state as app_state
from app.widgets import param_widget
from engine import InputError
from engine import params as table
from engine.montecarlo import trade_returns
from engine.plots import charts

st.title("Monte Carlo")
dataset.require_market()
result = app_state.result()
if result is None and links.autorun("montecarlo"):
    try:  # a link to this page: run the backtest it names first, as its sender had
        with st.spinner("Running the backtest..."):
            result = app_state.run_backtest()
    except InputError as exc:
        st.error(f"Cannot run the backtest: {exc}")
        st.stop()
if result is None:
    st.info("Run a backtest first: Monte Carlo resamples its trades.")
    st.page_link("../pages/backtest.py", label="Go to the Backtest page →", icon=":material/monitoring:")
    st.stop()
returns = trade_returns(result)
st.caption(
    f"{len(returns):,} trades and {len(result.equity):,} daily returns from the last backtest of "
    f"`{app_state.rule()}` on {dataset.require_market().name}."
)

setting_cols = st.columns(6)
method = param_widget("montecarlo.method", setting_cols[0])
param_widget("montecarlo.n_simulations", setting_cols[1])
param_widget("montecarlo.n_trades", setting_cols[2], disabled=method != "bootstrap")
param_widget("montecarlo.block_bars", setting_cols[3], disabled=method != "daily_blocks")
param_widget("montecarlo.seed", setting_cols[4])
threshold = param_widget("montecarlo.drawdown_pct", setting_cols[5])
if method != "daily_blocks" and int(result.equity["open_positions"].max()) > 1:
    st.info(
        "This backtest held several positions at once. The trade methods compound its trades one after "
        "another, so their median is not the backtest's own return; **daily_blocks** resamples the daily "
        "portfolio returns instead and is centred on it.",
        icon=":material/info:",
    )
settings = {p.name: widgets.value(p.path) for p in table.group("montecarlo")}
try:
    with st.spinner("Simulating..."):
        mc = app_state.run_montecarlo(result, settings)
except InputError as exc:
    st.error(str(exc))
    st.stop()

summary = mc.summary()
cards = st.columns(4)
cards[0].metric("Median final return", f"{summary.loc['p50', 'final return %']:,.2f}%")
cards[1].metric("Probability of a loss", f"{mc.probability_of_loss():.2%}")
cards[2].metric(f"P(drawdown worse than {threshold:g}%)", f"{mc.probability_of_drawdown_worse_than(threshold):.2%}")
cards[3].metric("Median max drawdown", f"{summary.loc['p50', 'max drawdown %']:,.2f}%")
left, right = st.columns([1, 2])
left.dataframe(summary.style.format("{:,.2f}"), width="stretch")
right.plotly_chart(charts.fan(mc.bands, mc.samples), width="stretch")
if method == "shuffle":  # one final return: the same trades compound to the same total in any order
    st.caption(
        "Shuffle reorders the same trades, so every simulation ends at the same return; what the order changes "
        "is the path, so the drawdowns below are what this method tests. Use bootstrap for a spread of returns."
    )
    st.plotly_chart(charts.histogram(mc.max_drawdown_pct, "Max drawdown %", -threshold), width="stretch")
else:
    a, b = st.columns(2)
    a.plotly_chart(charts.histogram(mc.final_return_pct, "Final return %", 0.0), width="stretch")
    b.plotly_chart(charts.histogram(mc.max_drawdown_pct, "Max drawdown %", -threshold), width="stretch")
