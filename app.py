"""Streamlit entry: navigation and shared state. Pages live in app_pages/ (not pages/, so that
st.navigation handles every URL, deep links on a fresh server included)."""

import streamlit as st

import app_state

st.set_page_config(page_title="Scanner & Backtester", page_icon=":material/candlestick_chart:", layout="wide")
app_state.init()

pages = [
    st.Page("app_pages/data.py", title="Data", icon=":material/database:", url_path="data", default=True),
    st.Page("app_pages/scanner.py", title="Scanner", icon=":material/search:", url_path="scanner"),
    st.Page("app_pages/backtest.py", title="Backtest", icon=":material/monitoring:", url_path="backtest"),
    st.Page("app_pages/optimize.py", title="Optimize", icon=":material/tune:", url_path="optimize"),
    st.Page("app_pages/montecarlo.py", title="Monte Carlo", icon=":material/casino:", url_path="montecarlo"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/history:", url_path="runs"),
]
page = st.navigation(pages)
market = app_state.market()
st.sidebar.caption(f"**Dataset:** {market.name}  \n{len(market.symbols)} symbols · {market.shape[0]:,} bars")
page.run()
