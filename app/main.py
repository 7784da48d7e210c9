"""Streamlit entry script: navigation, shared state and the sidebar. Start it with `python -m app` (or
`streamlit run app/main.py`). The pages live in the top-level `pages/` folder: beside `app/`, not inside it,
so Streamlit's old folder router stays off and st.navigation handles every URL, deep links on a fresh server
included."""

import time

import streamlit as st

from app import alerts as app_alerts
from app import dataset, family, identity, links
from app import reaper as app_reaper
from app import state as app_state
from engine.server.admission import WAIT_NOTICE, serve_defaults
from engine.server.settings import SettingsError
from engine.warmup import warm_up_in_background

st.set_page_config(page_title="Scanner & Backtester", page_icon=":material/candlestick_chart:", layout="wide")
try:
    serve_defaults()  # the server's limits apply here, not in the library; its settings are checked
except SettingsError as exc:  # fail closed: serve nothing with settings its operator did not mean
    st.error(str(exc))
    st.stop()
warm_up_in_background()
app_reaper.start()


def bell() -> st.Page:
    """The Alerts page, its title the unread count (the bell of the sidebar)."""
    count = app_alerts.unread()
    title = f"Alerts ({count:,})" if count else "Alerts"
    icon = ":material/notifications_active:" if count else ":material/notifications:"
    return st.Page("../pages/alerts.py", title=title, icon=icon, url_path="alerts")


pages = [
    st.Page("../pages/data.py", title="Data", icon=":material/database:", url_path="data", default=True),
    st.Page("../pages/scanner.py", title="Scanner", icon=":material/search:", url_path="scanner"),
    st.Page("../pages/backtest.py", title="Backtest", icon=":material/monitoring:", url_path="backtest"),
    st.Page("../pages/optimize.py", title="Optimize", icon=":material/tune:", url_path="optimize"),
    st.Page("../pages/montecarlo.py", title="Monte Carlo", icon=":material/casino:", url_path="montecarlo"),
    st.Page("../pages/screens.py", title="Screens", icon=":material/bookmarks:", url_path="screens"),
    st.Page("../pages/runs.py", title="Runs", icon=":material/history:", url_path="runs"),
    bell(),
]
page = st.navigation(pages)
links.init(page.url_path or "data")

identity.remember_browser()
market = dataset.market()
if market is None:
    st.sidebar.caption("**Dataset:** none loaded")
else:
    st.sidebar.caption(
        f"**Dataset:** {market.name}  \n{len(market.symbols):,} symbols · {market.shape[0]:,} dates  \n"
        f"id `{dataset.data_id()}`"
    )
if identity.upload_refusal():
    st.sidebar.caption("**Read-only visit**: not signed in through this server's proxy. Runs belong to this browser.")
else:
    st.sidebar.caption(f"Runs and uploads belong to **{identity.user_label()}**.")
problems = links.link_problems()
if problems:
    with st.container(border=True):
        for text in problems:
            st.warning(text, icon=":material/link_off:")
        if st.button("Dismiss", key="dismiss_link_problems"):
            links.dismiss_link_problems()
            st.rerun()
newer = family.newer_notice()
if newer is not None:  # an older version of a family: every page says so
    text, latest = newer
    note_col, open_col = st.columns([5, 1], vertical_alignment="center")
    note_col.info(f"{text}: open it to work on the latest bars.", icon=":material/update:")
    if open_col.button("Open the latest", key="open_latest_version"):
        dataset.open_stored(latest)
        st.rerun()
started = time.perf_counter()
waiting = st.empty()  # "queued behind N runs" while the server's memory budget is taken


def queued(ahead: int) -> None:
    waiting.info(
        f"Queued behind {ahead:,} run{'s' if ahead != 1 else ''}: the server's memory is in use. This run starts by "
        "itself as soon as there is room.",
        icon=":material/hourglass_top:",
    )


notice = WAIT_NOTICE.set(queued)
if (page.url_path or "data") not in ("data", "runs", "screens", "alerts"):
    app_state.wait_for_engine()
try:
    page.run()
finally:  # also after st.stop() and st.rerun(): every script run is timed in the server's log
    WAIT_NOTICE.reset(notice)
    waiting.empty()
    app_state.log_script(page.url_path or "data", time.perf_counter() - started)
