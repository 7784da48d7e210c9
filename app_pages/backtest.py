"""Backtest page: the scanner's current signals, parameters in a form, results in depth."""

import pandas as pd
import streamlit as st

import app_state
import charts
from engine import DataError
from engine.filters import RuleError
from engine.metrics import LABELS

st.title("Backtest")
market = app_state.market()
try:
    signals = app_state.signals()
except RuleError as exc:
    st.error(f"The scanner rule cannot run: {exc}")
    st.page_link("app_pages/scanner.py", label="Fix the rule on the Scanner page →", icon=":material/search:")
    st.stop()
st.caption(f"Signals: **{signals.count:,}** from `{app_state.rule()}` on {market.name}.")
if signals.count == 0:
    st.warning("The scanner's rule has no signals on this dataset, so there is nothing to backtest.")
    st.page_link("app_pages/scanner.py", label="Choose a rule on the Scanner page →", icon=":material/search:")
    st.stop()

v = app_state.bt_values()
with st.form("bt_form"):
    c = st.columns(4)
    capital = c[0].number_input("Initial capital", min_value=1_000.0, value=float(v["capital"]), step=10_000.0)
    side = c[1].selectbox("Direction", ["long", "short"], index=["long", "short"].index(v["side"]))
    maxpos = c[2].number_input("Max positions", min_value=1, max_value=500, value=int(v["maxpos"]))
    hold = c[3].number_input("Holding period (bars, 0 = off)", min_value=0, max_value=2520, value=int(v["hold"]))
    c = st.columns(4)
    sl = c[0].number_input("Stop-loss % (0 = off)", min_value=0.0, max_value=99.0, value=float(v["sl"]), step=0.5)
    tp = c[1].number_input("Take-profit % (0 = off)", min_value=0.0, max_value=99.0, value=float(v["tp"]), step=0.5)
    comm = c[2].number_input("Commission %", min_value=0.0, max_value=5.0, value=float(v["comm"]), step=0.01)
    slip = c[3].number_input("Slippage (bps)", min_value=0.0, max_value=500.0, value=float(v["slip"]), step=1.0)
    submitted = st.form_submit_button("Run backtest", type="primary")

values = {"capital": capital, "side": side, "maxpos": int(maxpos), "hold": int(hold), "sl": sl, "tp": tp,
          "comm": comm, "slip": slip}  # fmt: skip
result = st.session_state.result
# A shared link (with parameters in the URL) runs at once, so the receiver sees what the sender saw.
if submitted or (result is None and "sl" in st.query_params):
    try:
        with st.spinner("Running the backtest..."):
            result = app_state.run_backtest(values)
    except DataError as exc:
        st.error(str(exc))
        st.stop()
elif result is not None and not app_state.is_current(values):
    st.info("The rule, data or parameters changed since these results: press **Run backtest** to update.")
if result is None:
    st.info("Set the parameters and press **Run backtest**.")
    st.stop()

m = result.metrics
cards = ["total_return_pct", "cagr_pct", "sharpe", "sortino", "max_drawdown_pct", "win_rate_pct", "profit_factor",
         "n_trades"]  # fmt: skip
cols = st.columns(len(cards))
for col, key in zip(cols, cards, strict=True):
    value = m[key]
    col.metric(LABELS[key], f"{value:,}" if isinstance(value, int) else f"{value:,.2f}")
if result.ruined_on is not None:
    st.error(f"Ruin: equity reached zero on {result.ruined_on.date()}; the run stopped there.")
if m["signals_skipped"]:
    st.caption(f"{m['signals_skipped']:,} signals were skipped: " +
               ", ".join(f"{k} ({n:,})" for k, n in result.skipped().items()))  # fmt: skip

tab_eq, tab_trades, tab_months, tab_all = st.tabs(["Equity", "Trades", "Monthly returns", "All metrics"])
with tab_eq:
    st.plotly_chart(charts.equity(result.equity), width="stretch")
with tab_trades:
    trades = result.trades.drop(columns=["entry_bar", "exit_bar"])
    st.dataframe(trades, width="stretch", hide_index=True, height=300)
    if len(trades):
        pick = st.selectbox("Show trade", range(len(trades)), key="trade_pick", format_func=lambda i: (
            f"#{i + 1} {trades.symbol[i]} {trades.entry_date[i].date()} → {trades.exit_date[i].date()} "
            f"({trades.return_pct[i]:+.2f}%, {trades.exit_reason[i]})"))  # fmt: skip
        t = trades.iloc[pick]
        markers = pd.DataFrame({"date": [t.entry_date, t.exit_date], "price": [t.entry_price, t.exit_price],
                                "label": ["entry", f"exit: {t.exit_reason}"], "color": ["#2e7d32", "#c62828"],
                                "shape": ["triangle-up", "x"]})  # fmt: skip
        st.plotly_chart(charts.candles(market, t.symbol, markers=markers), width="stretch")
with tab_months:
    st.plotly_chart(charts.monthly_returns(result.equity), width="stretch")
with tab_all:
    st.dataframe(pd.DataFrame({"metric": [LABELS.get(k, k) for k in m], "value": list(m.values())}).astype(str),
                 hide_index=True, width="stretch")  # fmt: skip
d1, d2 = st.columns(2)
d1.download_button("Download trades (CSV)", result.trades.to_csv(index=False), "trades.csv", "text/csv")
d2.download_button("Download equity (CSV)", result.equity.to_csv(), "equity.csv", "text/csv")
