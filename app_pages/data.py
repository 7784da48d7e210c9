"""Data page: upload or pick a dataset (stored on the server so links can name it), its summary, quality
report and a chart."""

import pandas as pd
import streamlit as st

import app_state
import charts

st.title("Data")
st.caption("One dataset drives every page. Upload daily OHLCV bars for many symbols (CSV or Parquet, long format:"
           " symbol, date, open, high, low, close, volume; any column case; optional sector).")  # fmt: skip
ss = st.session_state
missing = app_state.missing_data_message()
if missing:
    st.error(missing)

left, mid, right = st.columns([3, 1, 1])
with left:
    uploaded = st.file_uploader("Upload CSV or Parquet", type=["csv", "gz", "parquet", "pq"], key="upload")
    if uploaded is not None and ss.get("_loaded_upload") != uploaded.file_id:
        ss["_loaded_upload"] = uploaded.file_id
        with st.spinner(f"Loading {uploaded.name}..."):
            error = app_state.load_upload(uploaded)
        ss["_upload_error"] = error and f"Could not load {uploaded.name}: {error}"
        if not error:
            st.rerun()  # the sidebar and the link name the new dataset at once
    if ss.get("_upload_error"):
        keep = "The previous dataset is still loaded." if app_state.market() is not None else ""
        st.error(f"{ss['_upload_error']} {keep}")
with mid:
    st.write("")
    if st.button("Use the real sample", help="AAPL, AMZN, GOOG, META, NFLX, NVDA 2013-2023 (MIT, historical)"):
        app_state.use_sample()
        ss["_upload_error"] = None
        st.rerun()
with right:
    st.write("")
    if st.button("Synthetic universe", help="200 seeded synthetic symbols x 2,520 bars with sectors"):
        app_state.use_synthetic()
        ss["_upload_error"] = None
        st.rerun()

store = app_state.dataset_store()
stored = store.list(viewer=app_state.user_id())
if store.directory is None:
    st.caption("Datasets are not stored (SCANNER_CACHE_DIR is empty): a link works only within this session; "
               "cross-session links need SCANNER_CACHE_DIR.")  # fmt: skip
elif stored:
    with st.expander(f"Stored datasets ({len(stored):,}): pick one, or delete your own"):
        table = pd.DataFrame([{"id": i.id, "name": i.name, "symbols": i.symbols, "bars": i.bars, "from": i.first_date,
                               "to": i.last_date, "size MB": i.bytes / 1e6, "yours": i.owner == app_state.user_id(),
                               "stored": pd.Timestamp(i.created, unit="s").floor("s")} for i in stored])  # fmt: skip
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={"size MB": st.column_config.NumberColumn(format="%,.2f"),
                                    "symbols": st.column_config.NumberColumn(format="%,d"),
                                    "bars": st.column_config.NumberColumn(format="%,d")})  # fmt: skip
        names = {i.id: f"{i.name} · {i.symbols:,} symbols · {i.first_date} to {i.last_date} · {i.id}" for i in stored}
        pick = st.selectbox("Dataset", list(names), format_func=names.get, key="stored_pick")
        c = st.columns([1, 1, 4])
        if c[0].button("Open", key="stored_open"):
            if app_state.open_stored(pick):
                st.rerun()
            st.error("That dataset could not be read (deleted or damaged); upload it again.")
        mine = next(i for i in stored if i.id == pick).owner == app_state.user_id()
        if c[1].button("Delete", key="stored_delete", disabled=not mine,
                       help=None if mine else "Only the user who uploaded a dataset can delete it."):  # fmt: skip
            store.delete(pick, app_state.user_id())
            st.rerun()

market = app_state.market()
if market is None:
    st.stop()
summary = market.summary()
st.subheader(market.name)
cols = st.columns(5)
cols[0].metric("Symbols", f"{summary['symbols']:,}")
cols[1].metric("From", summary["first_date"])
cols[2].metric("To", summary["last_date"])
cols[3].metric("Bars", f"{summary['bars']:,}")
cols[4].metric("Missing bars", f"{summary['missing_bars']:,}")
st.caption(f"Dataset id `{ss.data_id}`: links carry it, so a teammate on this server opens the same data.")

with st.expander("Data quality", expanded=bool(market.warnings)):
    if market.warnings:
        for w in market.warnings:
            st.warning(w)
    else:
        st.success("No gaps, no empty bars: every check passed.")

symbol = st.selectbox("Symbol", market.symbols, key=f"data_symbol.{ss.data_id}")  # a new list: a new widget
st.plotly_chart(charts.candles(market, symbol), width="stretch")
