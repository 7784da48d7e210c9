"""Backtest page: the scanner's current signals, parameters in a form, results in depth."""

import pandas as pd
import streamlit as st

import app_state
import charts
from engine import DataError
from engine.filters import RuleError
from engine.metrics import LABELS
from engine.sizing import DESCRIPTIONS, METHODS

# Per sizing method: (value key, label, type, min, max, step) of the inputs that method reads.
SIZING_INPUTS = {
    "equal_weight": [],
    "fixed_fractional": [("risk", "Risk % of equity per trade", float, 0.05, 20.0, 0.25)],
    "kelly": [("kmult", "Kelly multiplier", float, 0.05, 1.0, 0.05), ("kcap", "Cap % of equity", float, 1, 100, 5),
              ("kmin", "Min closed trades", int, 1, 1000, 5)],
    "volatility_target": [("vt", "Target volatility % of equity", float, 0.5, 100.0, 0.5),
                          ("vlb", "Volatility lookback (bars)", int, 5, 504, 5)],
    "atr_risk": [("risk", "Risk % of equity per trade", float, 0.05, 20.0, 0.25),
                 ("atrn", "ATR period", int, 2, 200, 1), ("atrk", "ATR multiple", float, 0.5, 10.0, 0.5),
                 ("atrstop", "Stop at k x ATR", bool, 0, 0, 0)],
    "fixed_amount": [("amt", "Amount per trade", float, 100.0, 1e9, 1000.0)],
}  # fmt: skip

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
# Outside the form so that choosing a method shows that method's parameters at once.
v["size"] = st.selectbox("Position sizing", list(METHODS), index=list(METHODS).index(v["size"]),
                         format_func=lambda name: f"{name.replace('_', ' ')}: {DESCRIPTIONS[name]}")  # fmt: skip
with st.form("bt_form"):
    values = dict(v)
    c = st.columns(4)
    values["capital"] = c[0].number_input("Initial capital", min_value=1_000.0, value=float(v["capital"]),
                                          step=10_000.0)  # fmt: skip
    values["side"] = c[1].selectbox("Direction", ["long", "short"], index=["long", "short"].index(v["side"]))
    values["maxpos"] = int(c[2].number_input("Max positions", min_value=1, max_value=500, value=int(v["maxpos"])))
    values["hold"] = int(c[3].number_input("Holding period (bars, 0 = off)", min_value=0, max_value=2520,
                                           value=int(v["hold"])))  # fmt: skip
    c = st.columns(4)
    values["sl"] = c[0].number_input("Stop-loss % (0 = off)", 0.0, 99.0, float(v["sl"]), 0.5)
    values["tp"] = c[1].number_input("Take-profit % (0 = off)", 0.0, 99.0, float(v["tp"]), 0.5)
    values["comm"] = c[2].number_input("Commission %", 0.0, 5.0, float(v["comm"]), 0.01)
    values["slip"] = c[3].number_input("Slippage (bps)", 0.0, 500.0, float(v["slip"]), 1.0)
    with st.expander(f"Sizing and leverage: {v['size'].replace('_', ' ')}", expanded=v["size"] != "equal_weight"):
        c = st.columns(4)
        for i, (key, label, kind, lo, hi, step) in enumerate(SIZING_INPUTS[v["size"]]):
            if kind is bool:
                values[key] = c[i].checkbox(label, value=bool(v[key]))
            else:
                values[key] = kind(c[i].number_input(label, kind(lo), kind(hi), kind(v[key]), kind(step)))
        c = st.columns(4)
        values["lev"] = c[0].checkbox("Allow leverage", value=bool(v["lev"]),
                                      help="Off: gross exposure never exceeds equity.")  # fmt: skip
        values["maxlev"] = c[1].number_input("Max leverage (x equity)", 1.0, 10.0, float(v["maxlev"]), 0.5)
        values["shrink"] = c[2].checkbox(
            "Shrink unfunded trades",
            value=bool(v["shrink"]),
            help="On: a trade that does not fit is cut to what fits; off: skipped.",
        )
    with st.expander("Risk limits (0 = off)"):
        c = st.columns(4)
        values["lpos"] = c[0].number_input("Max single position % of equity", 0.0, 100.0, float(v["lpos"]), 1.0)
        values["lsec"] = c[1].number_input(
            "Max sector exposure %",
            0.0,
            1000.0,
            float(v["lsec"]),
            5.0,
            disabled=market.sectors is None,
            help=None
            if market.sectors is not None
            else "This dataset has no sector column, so the sector limit is off.",
        )
        values["lcorr"] = c[2].number_input("Max correlation", 0.0, 1.0, float(v["lcorr"]), 0.05)
        values["clb"] = int(c[3].number_input("Correlation lookback (bars)", 5, 504, int(v["clb"])))
    submitted = st.form_submit_button("Run backtest", type="primary")

result = st.session_state.result
# A shared link (with parameters in the URL) runs at once, so the receiver sees what the sender saw.
if submitted or (result is None and app_state.link_has_params()):
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
if len(result.events):
    reasons = ", ".join(f"{k} ({n:,})" for k, n in result.skipped().items())
    cuts = int((result.events["action"] == "cut").sum())
    st.caption(f"{m['signals_skipped']:,} signals skipped and {cuts:,} sizes cut by a limit: {reasons}. "
               "See **Skips and cuts**.")  # fmt: skip

tab_eq, tab_trades, tab_months, tab_events, tab_all = st.tabs(
    ["Equity", "Trades", "Monthly returns", f"Skips and cuts ({len(result.events):,})", "All metrics"]
)
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
with tab_events:
    st.caption("Every signal a limit skipped or cut: value and limit are % of equity (positions, sectors), "
               "correlation, currency (cash) or open positions.")  # fmt: skip
    st.dataframe(result.events, width="stretch", hide_index=True, height=300)
with tab_all:
    st.dataframe(pd.DataFrame({"metric": [LABELS.get(k, k) for k in m], "value": list(m.values())}).astype(str),
                 hide_index=True, width="stretch")  # fmt: skip
d1, d2 = st.columns(2)
d1.download_button("Download trades (CSV)", result.trades.to_csv(index=False), "trades.csv", "text/csv")
d2.download_button("Download equity (CSV)", result.equity.to_csv(), "equity.csv", "text/csv")
