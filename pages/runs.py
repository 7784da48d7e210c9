"""Runs page: every run (from the run history), reopened, compared, or deleted by its owner."""

import pandas as pd
import streamlit as st

from app import formatting as app_format
from app import identity, whatif, widgets
from engine.metrics import KEY_METRICS, LABELS
from engine.plots import charts
from engine.server import service

PAGE_SIZE = 50
st.title("Runs")
if service.history_off() is not None:
    # off by setting: a fact (info); off by a fault of the disk: a warning
    (st.warning if service.cache_off() else st.info)(service.history_off())
    st.stop()
me = identity.user_id()
everyone = False
if service.team_view():
    widgets.seed_widget("w.runs.everyone", False)
    everyone = st.toggle(
        "Show the team's runs (read-only unless yours)", key="w.runs.everyone", persist_state=widgets.KEEP
    )
first = service.runs_page(me, everyone, limit=PAGE_SIZE)
total = first.total
if first.private:
    many = "runs" if first.private > 1 else "run"
    st.caption(f"{first.private:,} private {many} of teammates (on data they have not shared) not shown.")
if not total:
    st.info("No runs yet: run a backtest, an optimisation or a Monte Carlo simulation.")
    st.stop()
pages = (total - 1) // PAGE_SIZE + 1
page = 1
if pages > 1:
    page = int(st.number_input(f"Page (of {pages:,}; {total:,} runs)", 1, pages, 1, key="w.runs.page"))
runs = first.runs if page == 1 else service.runs_page(me, everyone, PAGE_SIZE, (page - 1) * PAGE_SIZE).runs

table = pd.DataFrame(
    [
        {
            "id": r.id,
            "when": pd.Timestamp(r.when, unit="s").floor("s"),
            "kind": r.kind,
            "by": "you" if r.session == me else service.maker(r),
            "data": r.data,
            "rule": r.rule,
            "settings": app_format.settings_changed(r.link) or "defaults",
            "seconds": round(r.seconds, 3),
            "cache": "hit" if r.cache_hit else "miss",
            "note": r.note,
            **r.metrics,
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
    service.delete_run(pick, me)
    st.rerun()


def save_note() -> None:
    service.set_note(pick, me, widgets.widget(f"w.runs.note.{pick}") or "")


st.text_input(
    "Note",
    value=record.note,
    key=f"w.runs.note.{pick}",
    max_chars=service.MAX_NOTE_CHARS,
    on_change=save_note,
    disabled=not mine,
    placeholder="What this run tried, what you concluded" if mine else "",
    help=None if mine else "Only the user who made a run can write its note.",
)
if record.kind == "backtest" and record.link:
    if c[1].button("Restore", key="runs_restore", help="Put back its dataset, rule and every setting, and run it."):
        problem = whatif.restore_record(record)
        if problem is None:
            st.switch_page("../pages/backtest.py")
        st.error(problem)
elif record.link:  # the page that made the run, with every setting and the dataset id
    c[1].link_button("Open as a link", f"./{record.kind}?{record.link}", help="Its page with every setting, run again.")
value = service.run_result(record)
with st.expander("Parameters", expanded=False):
    st.json(record.params)
if value is None:
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
elif record.kind == "events":
    st.caption(
        f"{len(value.events):,} signals, entered at the {value.entry.replace('_', ' ')}, against "
        f"{value.benchmark or 'no benchmark'}, cooldown {value.cooldown} bars."
    )
    st.dataframe(value.summary, width="stretch")
elif record.kind == "optimize":
    ranked = value.ranked
    st.dataframe(
        ranked,
        width="stretch",
        height=300,
        hide_index=True,
        column_config=app_format.grid_columns(ranked, app_format.rule_number_titles(record.rule)),
    )

backtests = [r.id for r in runs if r.kind == "backtest"]
st.subheader("Compare backtests")
chosen = st.multiselect("Two or more runs", backtests, default=backtests[:2], format_func=label, key="runs_cmp")
read = {label(i): service.run_result(by_id[i]) for i in chosen}
results = {k: v for k, v in read.items() if v is not None}
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
