"""Monte Carlo page: resample the last backtest's trades to see how much of its result could be luck."""

import streamlit as st

import app_state
import charts
from engine import DataError
from engine.montecarlo import monte_carlo, trade_returns

st.title("Monte Carlo")
result = st.session_state.get("result")
if result is None:
    st.info("Run a backtest first: Monte Carlo resamples its trades.")
    st.page_link("app_pages/backtest.py", label="Go to the Backtest page →", icon=":material/monitoring:")
    st.stop()
returns = trade_returns(result)
st.caption(f"{len(returns):,} trades from the last backtest of `{app_state.rule()}` on {app_state.market().name}.")

c = st.columns(5)
method = c[0].selectbox("Method", ["bootstrap", "shuffle"], key="mc_method",
                        help="bootstrap: draw trades with replacement; shuffle: same trades, random order")  # fmt: skip
n_sims = int(c[1].number_input("Simulations", 100, 100_000, 10_000, 1_000, key="mc_sims"))
n_trades = int(c[2].number_input("Trades per path", 2, 100_000, max(len(returns), 2), key="mc_trades",
                                 disabled=method == "shuffle"))  # fmt: skip
seed = int(c[3].number_input("Seed", 0, 2**31 - 1, 0, key="mc_seed"))
threshold = c[4].number_input("Drawdown threshold %", 1.0, 100.0, 20.0, 1.0, key="mc_dd")

params = {"backtest": result.params, "method": method, "n_sims": n_sims, "n_trades": n_trades, "seed": seed}
try:
    with st.spinner("Simulating..."):
        mc = app_state.cached_run(
            "montecarlo", params, lambda: monte_carlo(returns, n_sims, n_trades, method, seed),
            lambda r: {"p50_return_pct": float(r.summary().loc["p50", "final return %"]),
                       "p_loss": r.probability_of_loss()})  # fmt: skip
except DataError as exc:
    st.error(str(exc))
    st.stop()

summary = mc.summary()
c = st.columns(4)
c[0].metric("Median final return", f"{summary.loc['p50', 'final return %']:.1f}%")
c[1].metric("Probability of a loss", f"{mc.probability_of_loss():.1%}")
c[2].metric(f"P(drawdown worse than {threshold:g}%)", f"{mc.probability_of_drawdown_worse_than(threshold):.1%}")
c[3].metric("Median max drawdown", f"{summary.loc['p50', 'max drawdown %']:.1f}%")
left, right = st.columns([1, 2])
left.dataframe(summary.style.format("{:.2f}"), width="stretch")
right.plotly_chart(charts.fan(mc.bands, mc.samples), width="stretch")
a, b = st.columns(2)
a.plotly_chart(charts.histogram(mc.final_return_pct, "Final return %", 0.0), width="stretch")
b.plotly_chart(charts.histogram(mc.max_drawdown_pct, "Max drawdown %", -threshold), width="stretch")
