"""Data page: upload or pick a dataset (stored on the server so links can name it), how to read it, its
summary, quality report (bad rows, splits, outliers) and a chart."""

import pandas as pd
import streamlit as st

from app import dataset, family, identity, widgets
from app import formatting as app_format
from engine.data import describe_columns
from engine.plots import charts
from engine.server import service

st.title("Data")
st.caption(
    "One dataset drives every page. Upload daily OHLCV bars for many symbols (CSV or Parquet, long format:"
    " symbol, date, open, high, low, close, volume; any column case; optional sector and adj_close; any other"
    " column, such as pe_ratio, is a name rules can use)."
)
missing = dataset.missing_data_message()
if missing:
    st.error(missing)

READ_OPTIONS = ("load.prices", "load.date_format", "load.intraday", "load.outlier_pct")  # bad rows: a button
with st.expander("How to read the file: prices, dates, intraday bars, outliers"):
    for column, path in zip(st.columns(len(READ_OPTIONS)), READ_OPTIONS, strict=True):
        widgets.param_widget(path, where=column)
options = widgets.load_options(READ_OPTIONS)

refused = identity.upload_refusal()  # a visit without the sign-in proxy's header is read-only
left, mid, right = st.columns([3, 1, 1])
with left:
    uploaded = st.file_uploader(
        "Upload CSV or Parquet",
        type=["csv", "gz", "zip", "txt", "tsv", "parquet", "pq"],
        key="upload",
        disabled=refused is not None,
    )
    if uploaded is None:  # an error belongs to the file that caused it, not to a later visit
        dataset.forget_upload()
    elif dataset.upload_is_new((uploaded.file_id, tuple(options.items()))):
        with st.spinner(f"Loading {uploaded.name}..."):
            error = dataset.load_upload(uploaded, **options)
        dataset.set_upload_error(error and f"Could not load {uploaded.name}: {error}")
        if not error:
            st.rerun()  # the sidebar and the link name the new dataset at once
    if dataset.upload_error():
        keep = " The previous dataset is still loaded." if dataset.market() is not None else ""
        st.error(f"{dataset.upload_error()}{keep}")
        rows = dataset.bad_rows()
        if (
            uploaded is not None
            and rows
            and st.button(f"Load without these {rows:,} rows", type="primary", key="load_without")
        ):
            with st.spinner(f"Loading {uploaded.name} without its bad rows..."):
                error = dataset.load_upload(uploaded, on_bad_rows="drop", **options)
            dataset.set_upload_error(error and f"Could not load {uploaded.name}: {error}")
            st.rerun()
with mid:
    st.write("")
    if st.button("Use the real sample", help="AAPL, AMZN, GOOG, META, NFLX, NVDA 2013-2023 (MIT, historical)"):
        dataset.use_sample()
        dataset.set_upload_error(None)
        st.rerun()
with right:
    st.write("")
    if st.button("Synthetic universe", help="200 seeded synthetic symbols x 2,520 bars with sectors"):
        dataset.use_synthetic()
        dataset.set_upload_error(None)
        st.rerun()

if dataset.store_warning():
    st.warning(dataset.store_warning(), icon=":material/cloud_off:")
store = dataset.datasets()
stored = store.list(viewer=identity.user_id())
if refused:
    st.info(refused, icon=":material/lock:")
elif not identity.private_by_identity():
    st.caption(identity.identity_note())
if store.directory is None:
    st.caption(
        "Datasets are not stored (SCANNER_CACHE_DIR is empty): a link works only within this session; "
        "cross-session links need SCANNER_CACHE_DIR."
    )
elif stored:
    with st.expander(f"Stored datasets ({len(stored):,}): pick one, or delete your own"):
        table = pd.DataFrame(
            [
                {
                    "id": i.id,
                    "name": i.name,
                    "symbols": i.symbols,
                    "bars": i.bars,
                    "from": i.first_date,
                    "to": i.last_date,
                    "size MB": i.bytes / 1e6,
                    "yours": i.owner == identity.user_id(),
                    "shared with the team": i.shared,
                    "stored": pd.Timestamp(i.created, unit="s").floor("s"),
                }
                for i in stored
            ]
        )
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            column_config={
                "size MB": st.column_config.NumberColumn(format="%,.2f"),
                "symbols": st.column_config.NumberColumn(format="%,d"),
                "bars": st.column_config.NumberColumn(format="%,d"),
            },
        )
        names = {i.id: f"{i.name} · {i.symbols:,} symbols · {i.first_date} to {i.last_date} · {i.id}" for i in stored}
        pick = st.selectbox("Dataset", list(names), format_func=lambda i: names[i], key="stored_pick")
        listing_cols = st.columns([1, 1, 4])
        if listing_cols[0].button("Open", key="stored_open"):
            if pick is not None and dataset.open_stored(pick):
                st.rerun()
            st.error("That dataset could not be read (deleted or damaged); upload it again.")
        info = next(i for i in stored if i.id == pick)
        mine = info.owner == identity.user_id()
        if listing_cols[1].button(
            "Delete",
            key="stored_delete",
            disabled=not mine,
            help=None if mine else "Only the user who uploaded a dataset can delete it.",
        ):
            service.delete_dataset(pick, identity.user_id())
            st.rerun()
        share = "Stop listing it for the team" if info.shared else "List it for the team"
        if mine and listing_cols[2].button(
            share,
            key="stored_share",
            help=(
                "Listed: everyone on this server sees it on this page and can open its links and runs. "
                "Private: only you can; a teammate's link to it opens nothing."
            ),
        ):
            service.share_dataset(pick, identity.user_id(), not info.shared)
            st.rerun()

market = dataset.market()
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
current = dataset.data_id()
if current is not None and dataset.is_private(current):
    note_col, share_col = st.columns([4, 1], vertical_alignment="center")
    note_col.caption(
        f"Dataset id `{current}`: links carry it. It is private to you: a teammate's link to it opens nothing "
        "until you list it for the team."
    )
    if share_col.button(
        "List it for the team", key="current_share", help="Teammates can then open its links and runs."
    ):
        service.share_dataset(current, identity.user_id(), True)
        st.rerun()
else:
    st.caption(f"Dataset id `{dataset.data_id()}`: links carry it, so a teammate on this server opens the same data.")

# --- the dataset's family: versions, append, refresh ----------------------------------------------------------
line = family.current()
with st.expander(
    f"Family: {line.name} · {len(line.versions):,} versions" if line else "Keep this dataset current: make it a family",
    expanded=line is not None,
):
    said = family.message()
    if said:
        (st.error if family.restated() or "failed" in said or "cannot" in said else st.success)(said)
    if line is None:
        st.caption(
            "A family is a named line of versions of this dataset: append tomorrow's bars or refresh them from a "
            "source (a URL per symbol, a database, Yahoo), and every page says when a newer version exists. Each "
            "version keeps its own id, so links to it still reproduce it."
        )
        name_col, make_col = st.columns([3, 1], vertical_alignment="bottom")
        family_name = name_col.text_input(
            "Family name", value=market.name[:80], key=f"family_name.{dataset.data_id()}", max_chars=80
        )
        if make_col.button("Make it a family", key="family_make", disabled=refused is not None, help=refused):
            error = family.keep_as_family(family_name, None)
            if error:
                st.error(error)
            else:
                st.rerun()
    else:
        st.caption(
            f"`?family={line.slug}` opens its latest version; `?data=<id>` a version exactly. A symbol that gets "
            "no new bars keeps its bars up to its last one (listed under 'no new bars'); fixing a flagged bar "
            "of the latest version makes the next version. "
            f"{'Shared with the team' if line.shared else 'Private to its owner'}; made by "
            f"{line.owner.removeprefix('user:')}."
        )
        versions = pd.DataFrame(
            [
                {
                    "version": n,
                    "id": v.id,
                    "made": pd.Timestamp(v.made, unit="s").floor("s"),
                    "by": v.by.removeprefix("user:"),
                    "how": v.how,
                    "to": v.last_date,
                    "bars added": v.bars_added,
                    "symbols added": ", ".join(v.symbols_added[:5]),
                    "no new bars": ", ".join(v.symbols_gone[:5]),
                    "restated bars": v.restated,
                    "current": v.id == dataset.data_id(),
                }
                for n, v in reversed(list(enumerate(line.versions, start=1)))
            ]
        )
        st.dataframe(
            versions,
            hide_index=True,
            width="stretch",
            height=min(38 + 35 * len(versions), 250),
            column_config={"bars added": st.column_config.NumberColumn(format="%,d")},
        )
        if family.may_change(line):
            add_col, source_col = st.columns(2)
            with add_col:
                recent = st.file_uploader(
                    "Append recent bars (CSV or Parquet; may overlap the last bars, may add symbols)",
                    type=["csv", "gz", "zip", "txt", "tsv", "parquet", "pq"],
                    key="append_upload",
                )
                if recent is not None and dataset.upload_is_new((recent.file_id,), uploader="append"):
                    with st.spinner(f"Appending {recent.name}..."):
                        family.append_file(line, recent)
                    st.rerun()
                conflict = family.restated()
                if conflict is not None:
                    st.dataframe(
                        conflict.table.head(200),
                        hide_index=True,
                        width="stretch",
                        height=200,
                        column_config={"date": app_format.DATE},
                    )
                    replace_col, keep_col = st.columns(2)
                    if replace_col.button("Take the new history", key="append_replace", type="primary"):
                        with st.spinner("Taking the new history for those symbols..."):
                            if recent is not None:
                                family.append_file(line, recent, on_restated="replace")
                            else:  # the conflict came from a refresh: fetch those symbols' whole history
                                family.refresh(line, False, "replace", None)
                        st.rerun()
                    if keep_col.button("Keep the stored bars", key="append_dismiss"):
                        family.dismiss_restated()
                        st.rerun()
            with source_col:
                source = line.source or {}
                address = st.text_input(
                    "Source: a URL per symbol with {symbol} (e.g. Stooq's daily CSV)",
                    value=source.get("address", "") if source.get("kind") == "url" else "",
                    key="family_source_url",
                    placeholder="https://stooq.com/q/d/l/?s={symbol}&i=d",
                )
                symbols_text = st.text_input(
                    "Symbols as the source spells them (comma-separated)",
                    value=", ".join(source.get("symbols", ())),
                    key="family_source_symbols",
                    placeholder="aapl.us, msft.us",
                )
                if line.owner == identity.user_id() and st.button("Save the source", key="family_source_save"):
                    symbols_list = [x.strip() for x in symbols_text.split(",") if x.strip()]
                    error = family.set_source(line, {"kind": "url", "address": address, "symbols": symbols_list})
                    if error:
                        st.error(error)
                    else:
                        st.rerun()
                partial = st.checkbox(
                    "Partial refreshes: append the symbols that answered when some fail",
                    key="family_partial",
                )
                if st.button(
                    "Refresh now",
                    key="family_refresh",
                    type="primary",
                    disabled=not line.source,
                    help=None if line.source else "Save a source first.",
                ):
                    bar = st.progress(0.0, text="Asking the source...")
                    family.refresh(
                        line,
                        partial,
                        "refuse",
                        lambda done, total, sym: bar.progress(
                            done / max(total, 1), text=f"{done:,} of {total:,}: {sym}"
                        ),
                    )
                    st.rerun()
        if line.owner == identity.user_id() and identity.private_by_identity():
            label = "Make the family private" if line.shared else "Share the family with the team"
            if st.button(label, key="family_share"):
                family.share(line, not line.shared)
                st.rerun()

issues = market.issues if market.issues is not None else pd.DataFrame(columns=["kind", "symbol", "date", "value"])
dropped = market.dropped_rows
with st.expander("Data quality", expanded=bool(market.warnings) or len(issues) > 0):
    for w in market.warnings:
        st.warning(w)
    if not market.warnings and issues.empty:
        st.success("No gaps, no empty bars, no bad rows, no likely splits or outliers: every check passed.")
    if dropped is not None:
        report = app_format.safe_csv(dropped, index=False)
        st.download_button(
            f"Download the {len(dropped):,} dropped rows (CSV)",
            report,
            "dropped_rows.csv",
            "text/csv",
            key="dropped_download",
        )
    if len(issues):
        shown = issues.assign(
            value=[
                f"{v:+,.1f}%" if k == "outlier" else f"x{v:g}" for k, v in zip(issues.kind, issues.value, strict=True)
            ]
        )
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            height=min(38 + 35 * len(shown), 300),
            column_config={"date": app_format.DATE},
        )
        flagged = sorted(set(issues[issues.kind == "outlier"].symbol))
        if flagged and st.button(f"Exclude the {len(flagged):,} symbols with outliers", key="exclude_outliers"):
            dataset.exclude_symbols(flagged)
            st.rerun()
        row = st.selectbox(
            "Or fix one flagged bar",
            range(len(shown)),
            format_func=lambda i: (
                f"{shown.symbol.iloc[i]} {shown.date.iloc[i]:%Y-%m-%d}: {shown.kind.iloc[i]} {shown.value.iloc[i]}"
            ),
            key=f"w.data.flag.{dataset.data_id()}",
        )
        kind, flagged_symbol, day = issues.kind.iloc[row], issues.symbol.iloc[row], issues.date.iloc[row]
        fix_cols = st.columns(3)
        fixes = [
            ("adjust", "Back-adjust this split", kind == "split", "Prices before it divided by its ratio."),
            ("drop", "Drop this bar", True, f"{flagged_symbol} has no bar on {day:%Y-%m-%d}; the rest stays."),
        ]
        for col, (fix, text, usable, why) in zip(fix_cols, fixes, strict=False):
            if col.button(text, key=f"w.data.fix.{fix}", disabled=not usable, help=why if usable else "Not a split."):
                dataset.fix_flag(fix, flagged_symbol, day)
                st.rerun()
        if fix_cols[2].button(
            f"Exclude {flagged_symbol}", key="w.data.fix.exclude", help="Every bar of this symbol left out."
        ):
            dataset.exclude_symbols([flagged_symbol])
            st.rerun()
        st.caption("Each fix makes a new dataset (a new id for links); the original stays under Stored datasets.")

columns = describe_columns(market)
with st.expander(f"Columns rules can use ({len(columns):,} of the data's own)", expanded=not columns.empty):
    st.caption(
        "Besides prices, volume and indicators, rules can use the data's own columns: numbers such as "
        '`pe_ratio < 15 and rsi(14) < 30`, text by equality such as `sector == "Technology"` or '
        '`sector in ("Energy", "Utilities")`. A value is used from its date on, carried forward per symbol '
        "until the next one, never before its date."
    )
    if not columns.empty:
        st.dataframe(
            columns,
            hide_index=True,
            width="stretch",
            column_config={"bars without a value": st.column_config.NumberColumn(format="%,d")},
        )
    extra = st.file_uploader(
        "Attach columns: a CSV or Parquet of symbol, date and your columns (e.g. quarterly pe_ratio, eps)",
        type=["csv", "gz", "zip", "txt", "tsv", "parquet", "pq"],
        key="attach_upload",
        disabled=refused is not None,
        help="Joined as of each bar's date: a new dataset (a new id), stored for links like an upload.",
    )
    if extra is not None and dataset.upload_is_new((extra.file_id,), uploader="attach"):
        with st.spinner(f"Joining {extra.name}..."):
            if not dataset.attach_upload(extra):
                st.rerun()
    if extra is not None and dataset.attach_error():
        st.error(f"Could not attach {extra.name}: {dataset.attach_error()} The dataset is unchanged.")

symbol = st.selectbox("Symbol", market.symbols, key=f"data_symbol.{dataset.data_id()}")  # a new list: a new widget
st.plotly_chart(charts.candles(market, symbol), width="stretch")
