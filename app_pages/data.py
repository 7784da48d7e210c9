"""Data page: upload or pick a dataset, see its summary, quality report and a chart."""

import streamlit as st

import app_state
import charts

st.title("Data")
st.caption("One dataset drives every page. Upload daily OHLCV bars for many symbols (CSV or Parquet, long format:"
           " symbol, date, open, high, low, close, volume; any column case; optional sector).")  # fmt: skip

left, mid, right = st.columns([3, 1, 1])
with left:
    uploaded = st.file_uploader("Upload CSV or Parquet", type=["csv", "gz", "parquet", "pq"], key="upload")
    if uploaded is not None and st.session_state.get("_loaded_upload") != uploaded.file_id:
        st.session_state["_loaded_upload"] = uploaded.file_id
        error = app_state.load_upload(uploaded)
        st.session_state["_upload_error"] = error and f"Could not load {uploaded.name}: {error}"
    if st.session_state.get("_upload_error"):
        st.error(st.session_state["_upload_error"] + " The previous dataset is still loaded.")
with mid:
    st.write("")
    if st.button("Use the real sample", help="AAPL, AMZN, GOOG, META, NFLX, NVDA 2013-2023 (MIT, historical)"):
        app_state.use_sample()
        st.session_state["_upload_error"] = None
with right:
    st.write("")
    if st.button("Synthetic universe", help="200 seeded synthetic symbols x 2,520 bars with sectors"):
        app_state.use_synthetic()
        st.session_state["_upload_error"] = None

market = app_state.market()
summary = market.summary()
st.subheader(market.name)
cols = st.columns(5)
cols[0].metric("Symbols", summary["symbols"])
cols[1].metric("From", summary["first_date"])
cols[2].metric("To", summary["last_date"])
cols[3].metric("Bars", f"{summary['bars']:,}")
cols[4].metric("Missing bars", f"{summary['missing_bars']:,}")

with st.expander("Data quality", expanded=bool(market.warnings)):
    if market.warnings:
        for w in market.warnings:
            st.warning(w)
    else:
        st.success("No gaps, no empty bars: every check passed.")

symbol = st.selectbox("Symbol", market.symbols, key="data_symbol")
st.plotly_chart(charts.candles(market, symbol), width="stretch")
