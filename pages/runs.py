"""Runs page: every run (from the run history), reopened, compared, or deleted by its owner."""

import os

import pandas as pd
import streamlit as st

from app import formatting as app_format
from app import state as app_state
from engine.cache import MAX_NOTE_CHARS
from engine.metrics import KEY_METRICS, LABELS
from engine.plots import charts

PAGE_SIZE = 50
st.title("Runs")
cache = app_state.run_cache()
if cache.directory is None:
    st.info("The run cache is off (SCANNER_CACHE_DIR is empty), so no history is kept.")
    st.stop()
if cache.disabled:
    st.warning(f"Caching and run history are off: {cache.disabled}. Runs still work, uncached.")
    st.stop()
me = app_state.user_id()
team_view = os.environ.get("SCANNER_TEAM_VIEW", "1") != "0"
everyone = False
if team_view:
    app_state.seed_widget("w.runs.everyone", False)
    everyone = st.toggle(
        "Show the team's runs (read-only unless yours)", key="w.runs.everyone", persist_state=app_state.KEEP
    )
owner = None if everyone else me
total = cache.count(owner)
if not total:
    st.info("No runs yet: run a backtest, an optimisation or a Monte Carlo simulation.")
    st.stop()
pages = (total - 1) // PAGE_SIZE + 1
page = 1
if pages > 1:
    page = int(st.number_input(f"Page (of {pages:,}; {total:,} runs)", 1, pages, 1, key="w.runs.page"))
runs = cache.runs(owner, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)


openable: dict[str, bool] = {}  # dataset id -> may this user open it; each is looked up once per page run


def can_open(r) -> bool:
    """Whether this user may open the run's dataset: their own run, a built-in, or one shared with them."""
    if r.session == me or r.link.startswith(("data=sample", "data=synthetic")):
        return True
    ds_id = r.fingerprint[:16]
    if ds_id not in openable:
        openable[ds_id] = app_state.can_open(ds_id)
    return openable[ds_id]


def data_name(r) -> str:
    """Another user's dataset name shows only when this user may open the dataset."""
    return r.data if can_open(r) else "(private dataset)"


table = pd.DataFrame(
    [
        {
            "id": r.id,
            "when": pd.Timestamp(r.when, unit="s").floor("s"),
            "kind": r.kind,
            "by": "you" if r.session == me else "teammate",
            "data": data_name(r),
            "rule": r.rule,
            "settings": app_format.settings_changed(r.link) or "defaults",
            "seconds": round(r.seconds, 3),
            "cache": "hit" if r.cache_hit else "miss",
            "note": r.note if can_open(r) else "",
            **(r.metrics if can_open(r) else {}),
        }
        for r in runs
    ]
)
columns = app_format.grid_columns(table) | {
    "when": st.column_config.DatetimeColumn("when", format="YYYY-MM-DD HH:mm:ss"),
    "seconds": st.column_config.NumberColumn("seconds", format="%.3f"),
}
st.dataframe(table, hide_index=True, width="stretch", height=260, column_config=columns)
by_id = {r.id: r for r in runs}
when = dict(zip(table["id"], table["when"], strict=True))


def label(run_id: str) -> str:
    """What sets a run apart: its kind, the settings it changed from the defaults, its rule and when."""
    r = by_id[run_id]
    changed = app_format.settings_changed(r.link) or "defaults"
    return f"{r.kind} · {changed} · {r.rule[:40]} · {when[run_id]:%m-%d %H:%M:%S}"


pick = st.selectbox("Reopen a run", list(by_id), format_func=label, key="runs_pick")
record = by_id[pick]
c = st.columns([1, 1, 4])
mine = record.session == me
if c[0].button(
    "Delete this run",
    key="runs_delete",
    disabled=not mine,
    help=None if mine else "Only the user who made a run can delete it.",
):
    cache.delete_run(pick, me)
    st.rerun()
private = not can_open(record)


def save_note() -> None:
    cache.set_note(pick, me, app_state.widget(f"w.runs.note.{pick}") or "")


st.text_input(
    "Note",
    value="" if private else record.note,
    key=f"w.runs.note.{pick}",
    max_chars=MAX_NOTE_CHARS,
    on_change=save_note,
    disabled=not mine,
    placeholder="What this run tried, what you concluded" if mine else "",
    help=None if mine else "Only the user who made a run can write its note.",
)
if record.link and not private:  # the page that made the run, with every setting and the dataset id
    name = "Load into Backtest" if record.kind == "backtest" else "Open as a link"
    c[1].link_button(name, f"./{record.kind}?{record.link}", help="Its page with every setting, run at once.")
value = None if private else cache.get(record.key)
with st.expander("Parameters", expanded=False):
    st.json(record.params)
if private:
    st.info(
        "This run's dataset is private to its owner: its trades and charts are not shown. Ask them to share "
        "the dataset (Data page) to open the run."
    )
elif value is None:
    st.warning("This run's result has left the cache (size limit); open its link to recompute it.")
elif record.kind == "backtest":
    m = value.metrics
    cols = st.columns(len(KEY_METRICS))
    for col, key in zip(cols, KEY_METRICS, strict=True):
        col.metric(LABELS[key], app_format.metric_text(key, m[key]))
    st.plotly_chart(charts.equity(value.equity, value.params.benchmark), width="stretch")
elif record.kind == "montecarlo":
    left, right = st.columns([1, 2])
    left.dataframe(value.summary().style.format("{:,.2f}"), width="stretch")
    right.plotly_chart(charts.fan(value.bands, value.samples), width="stretch")
elif record.kind == "optimize":
    table = value.ranked
    st.dataframe(
        table,
        width="stretch",
        height=300,
        hide_index=True,
        column_config=app_format.grid_columns(table, app_format.rule_number_titles(record.rule)),
    )

backtests = [r.id for r in runs if r.kind == "backtest" and can_open(r)]
st.subheader("Compare backtests")
chosen = st.multiselect("Two or more runs", backtests, default=backtests[:2], format_func=label, key="runs_cmp")
results = {label(i): cache.get(by_id[i].key) for i in chosen}
results = {k: v for k, v in results.items() if v is not None}
if len(results) >= 2:
    links = {label(i): by_id[i].link for i in chosen if label(i) in results}
    settings = app_format.settings_rows(links)
    if settings.empty:
        st.caption("These runs use the default settings; their metrics:")
    else:
        st.caption("Settings (rows that differ are highlighted), then metrics.")
        styled = settings.style.apply(app_format.highlight_differences, axis=1)
        st.dataframe(styled, width="stretch", height=38 + 35 * len(settings))
    st.dataframe(
        pd.DataFrame(
            {
                k: {LABELS.get(m, m): app_format.metric_text(m, v) for m, v in r.metrics.items()}
                for k, r in results.items()
            }
        ),
        width="stretch",
    )
    st.plotly_chart(charts.equity_overlay({k: r.equity.equity for k, r in results.items()}), width="stretch")
