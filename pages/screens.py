"""Screens page: the team's saved screens (the owner's private ones for the owner), what each matches on its
data's latest bar, who entered and left, and its track record before and since it was saved."""

import pandas as pd
import streamlit as st

from app import alerts, screens
from app import formatting as app_format
from app.identity import upload_refusal

st.title("Screens")
st.caption(
    "Saved screens follow their data: a screen on a family uses its latest version. Save one from the Scanner "
    "(**Save screen**). The track record splits each screen's signals at the moment its rule was saved: before "
    "is what its author could see while tuning it; since is out of sample."
)
saved = screens.listed()
if not saved:
    st.info("No screens yet: write a rule on the **Scanner** page and save it.", icon=":material/bookmark:")
    st.stop()

rows = []
for screen in saved[:50]:
    now = screens.today(screen)
    rows.append(
        {
            "name": screen.name,
            "rule": screen.rule,
            "owner": ("you" if screens.mine(screen) else screen.owner.removeprefix("user:"))
            + (" · shared" if screen.shared else " · private"),
            "saved": pd.Timestamp(screen.saved, unit="s").floor("s"),
            "on": None if now is None else now.date,
            "matches": None if now is None else len(now.matches),
            "entered": None if now is None else len(now.entered),
            "left": None if now is None else len(now.left),
        }
    )
st.dataframe(
    pd.DataFrame(rows),
    hide_index=True,
    width="stretch",
    height=min(38 + 35 * len(rows), 320),
    column_config={
        "on": app_format.DATE,
        "saved": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        **{n: st.column_config.NumberColumn(format="%,d") for n in ("matches", "entered", "left")},
    },
)
if len(saved) > 50:
    st.caption(f"Showing the newest 50 of {len(saved):,} screens.")

names = {s.id: f"{s.name} · {s.rule[:60]}" for s in saved[:50]}
picked = st.selectbox("Screen", list(names), format_func=lambda i: names[i], key="w.screens.pick")
screen = next(s for s in saved if s.id == picked)
now = screens.today(screen)
top = st.columns([4, 2, 1, 1], vertical_alignment="center")
top[0].markdown(
    f"**{screen.name}** — `{screen.rule}` on `{screen.data}`" + (f"  \n{screen.note}" if screen.note else "")
)
top[1].link_button("Open in the Scanner", screens.scanner_link(screen), icon=":material/search:", width="stretch")
if top[2].button("Copy", key="w.screens.copy", help="Your own private copy (its period since saving starts now)."):
    screens.copy(screen)
    st.rerun()
if screens.mine(screen) and top[3].button("Delete", key="w.screens.delete"):
    screens.delete(screen)
    st.rerun()

followed = alerts.following(screen)
follow = st.toggle(
    "Alert me when names enter this screen (the Alerts page, and your webhook)",
    value=followed,
    key=f"w.screens.follow.{screen.id}",
    disabled=upload_refusal() is not None,
    help="On each new bar of the screen's family. Its owner follows it from the start.",
)
if follow != followed:
    refusal = alerts.follow(screen, follow)
    if refusal:
        st.error(refusal)

if now is None:
    st.warning("This screen's data is no longer on this server, or not open to you.")
    st.stop()
tabs = st.tabs(
    [
        f"Matches on {now.date:%Y-%m-%d} ({len(now.matches):,})",
        f"Entered ({len(now.entered):,})",
        f"Left ({len(now.left):,})",
        "Track record",
    ]
)
for tab, table, empty in (
    (tabs[0], now.matches, "Nothing matches on this bar."),
    (tabs[1], now.entered, "No symbol entered on this bar."),
    (tabs[2], now.left, "No symbol left on this bar."),
):
    with tab:
        if len(table):
            st.dataframe(table, hide_index=True, width="stretch", column_config=app_format.two_decimal_columns(table))
        else:
            st.caption(empty)
with tabs[3]:
    record = screens.track_record(screen)
    if record is None:
        st.caption("No track record: the screen's data is gone.")
    else:
        before_col, since_col = st.columns(2)
        for col, title, table in (
            (
                before_col,
                f"Before saving (to {record.split:%Y-%m-%d}): {record.signals_before:,} signals",
                record.before,
            ),
            (since_col, f"Since saving: {record.signals_since:,} signals", record.since),
        ):
            col.markdown(f"**{title}**")
            if not table["events"].sum():
                col.caption("No signals in this period yet.")
                continue
            col.dataframe(
                pd.DataFrame(
                    {
                        "signals": table["events"],
                        "mean": table["mean"] * 100.0,
                        "excess": table["mean_excess"] * 100.0,
                        "95% interval": [
                            f"{lo * 100:+.2f}% to {hi * 100:+.2f}%"
                            for lo, hi in zip(table.ci_low, table.ci_high, strict=True)
                        ],
                        "hit rate": table["hit_rate"] * 100.0,
                        "t": table["t_stat"],
                    }
                ),
                width="stretch",
                column_config={
                    "signals": st.column_config.NumberColumn(format="%,d"),
                    "mean": st.column_config.NumberColumn(format="%+.2f%%"),
                    "excess": st.column_config.NumberColumn(format="%+.2f%%"),
                    "hit rate": st.column_config.NumberColumn(format="%.1f%%"),
                    "t": st.column_config.NumberColumn(format="%.2f"),
                },
            )
        (st.warning if record.signals_since < 30 else st.caption)(record.note)

if screens.mine(screen):
    with st.expander("Edit (the previous text is kept; a new rule starts a new period since saving)"):
        name = st.text_input("Name", value=screen.name, key=f"w.screens.name.{screen.id}", max_chars=80)
        rule = st.text_area("Rule", value=screen.rule, key=f"w.screens.rule.{screen.id}", height=80)
        note = st.text_input("Note", value=screen.note, key=f"w.screens.note.{screen.id}", max_chars=500)
        shared = st.checkbox("Shared with the team", value=screen.shared, key=f"w.screens.shared.{screen.id}")
        if st.button("Save changes", key="w.screens.save"):
            error = screens.change(screen, name=name, rule=rule, note=note, shared=shared)
            if error:
                st.error(error)
            else:
                st.rerun()
