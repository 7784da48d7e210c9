"""Alerts page: the names that entered the screens you follow on each new bar of their data (newest first, a link
to the Scanner on that bar), and your webhook: its address, a secret shown once, and every delivery's fate."""

import pandas as pd
import streamlit as st

from app import alerts
from app.identity import upload_refusal

st.title("Alerts")
st.caption(
    "When a family gets a new version (an upload, an append, a refresh), every saved screen on it runs on the new "
    "bars; the names that entered reach the screen's followers here, and on their webhook. Follow a screen on the "
    "**Screens** page (its owner follows it from the start)."
)
refused = upload_refusal()
if refused:
    st.info(f"{refused} Alerts need an identity of your own.", icon=":material/notifications_off:")
    st.stop()

page = 0
shown = alerts.entries(page)
if not shown:
    st.info("No alerts yet: they arrive when new bars of a followed screen's data come in.", icon=":material/inbox:")
for entry in shown:
    with st.container(border=True):
        text, link = st.columns([3, 1], vertical_alignment="center")
        left = f"  \nLeft: {', '.join(r['symbol'] for r in entry.left[:12])}" if entry.left else ""
        badge = "" if entry.read else " :blue-badge[new]"
        text.markdown(f"**{entry.screen_name}** · {entry.bar}{badge}  \n{alerts.entered(entry)}{left}")
        link.link_button("Open in the Scanner", alerts.scanner_link(entry), icon=":material/search:", width="stretch")
alerts.seen(shown)  # what is on screen is read: the bell counts the rest
if len(shown) == alerts.PAGE_ROWS:
    st.caption(f"The newest {alerts.PAGE_ROWS} alerts; the API's /api/alerts pages through the rest.")

st.subheader("Webhook")
st.caption(
    "Each alert is POSTed as JSON, signed: `X-Scanner-Signature` is `sha256=` and the HMAC-SHA256 of "
    f"`X-Scanner-Timestamp`, a dot and the body under your secret. Failed tries are retried after "
    f"{alerts.BACKOFF_TEXT}; each one is in the log below."
)
hook = alerts.webhook()
if hook is not None:
    st.markdown(f"Sending to `{hook.url}` · {'Slack text' if hook.slack else 'JSON'} · secret `{hook.hint}`")
with st.form("w.alerts.webhook", border=True):
    url = st.text_input("Webhook address", value=hook.url if hook else "", max_chars=500, key="w.alerts.url")
    slack = st.checkbox('Slack-compatible body ({"text": ...})', value=bool(hook and hook.slack), key="w.alerts.slack")
    saved = st.form_submit_button("Save webhook (a new secret)")
if saved:
    new, error = alerts.set_webhook(url, slack)
    if error:
        st.error(error)
    elif new is not None:
        st.success("Saved. Copy the secret now: it is not shown again.")
        st.code(new.secret, language=None)
if hook is not None:
    rotate_col, remove_col, _ = st.columns([1, 1, 3])
    if rotate_col.button("New secret", key="w.alerts.rotate", help="The old secret stops signing at once."):
        rotated = alerts.rotate()
        if rotated is not None:
            st.success("The new secret (copy it now: it is not shown again):")
            st.code(rotated.secret, language=None)
    if remove_col.button("Remove webhook", key="w.alerts.remove"):
        alerts.remove()
        st.rerun()
log = alerts.deliveries()
if log:
    st.markdown("**Deliveries**")
    st.dataframe(
        pd.DataFrame(
            {
                "screen": [d.screen_name for d in log],
                "date": [d.bar for d in log],
                "status": [d.status for d in log],
                "tries": [d.attempts for d in log],
                "last answer": [d.last_error or (f"HTTP {d.last_code}" if d.last_code else "") for d in log],
                "next try": [
                    pd.Timestamp(d.next_try, unit="s").floor("s") if d.status == "queued" else None for d in log
                ],
            }
        ),
        hide_index=True,
        width="stretch",
        column_config={
            "next try": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
            "last answer": st.column_config.TextColumn(width="large"),
        },
    )
