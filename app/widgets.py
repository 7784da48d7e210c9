"""The settings and the widgets that edit them: every setting is a row of the parameter table
(engine/params.py) and lives in session state under the key `p.<url key>` (e.g. `p.sl`), which is also its
widget's key. Widgets are created with that key, never with `value=` (so Streamlit never recreates them and no
edit is lost), and with `persist_state="session"` (so a page's settings survive a visit to another page). A
page's own widgets (`w.<page>.<name>`) and the Optimize grid (`grid.*`) are read and reset only through here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import streamlit as st

from app import formatting as app_format
from app import session
from engine import InputError
from engine import params as table
from engine.backtest import params_from_values
from engine.optimize import OBJECTIVES, default_range, format_grid_spec
from engine.sizing import DESCRIPTIONS

DEFAULT_GRID = ("stop_loss", "take_profit")
KEEP: Literal["session"] = "session"  # persist_state of every settings widget: kept while the user is on another page


def key(path: str) -> str:
    """The session-state and widget key of a table parameter."""
    return "p." + table.TABLE[path].url


def _boxed(p: table.Param) -> bool:
    """A number that can be off: its box is empty (placeholder "Off") rather than showing 0."""
    return p.off and p.kind in (int, float)


def _to_widget(p: table.Param, v: Any) -> Any:
    return None if _boxed(p) and not v else v


def _from_widget(p: table.Param, v: Any) -> Any:
    """The table's value of what a widget holds: an empty box is the 'off' 0."""
    return p.kind(0) if _boxed(p) and v is None else v


def value(path: str) -> Any:
    return _from_widget(table.TABLE[path], st.session_state[key(path)])


def set_value(path: str, value_: Any) -> None:
    """Set a table parameter's value (its widget shows it on the next run)."""
    st.session_state[key(path)] = _to_widget(table.TABLE[path], value_)


def load_options(paths: tuple[str, ...]) -> dict[str, Any]:
    """How to read a file, as `load_market` takes it (by field name; empty -> None where that means detect)."""
    return table.library_fields({p: value(p) for p in paths})


def values() -> dict[str, Any]:
    """Current backtest settings (user values) by table path."""
    return {p.path: value(p.path) for p in table.backtest_params()}


def bt_params():
    """BacktestParams from the current settings (ParamError naming the field when one is out of range)."""
    return params_from_values(values())


# --- widgets a page owns ----------------------------------------------------------------------------------
# A page's own widgets keep their keys (w.<page>.<name>); pages read, seed and reset them only through here.


def widget(key: str, default: Any = None) -> Any:
    return st.session_state.get(key, default)


def seed_widget(key: str, default: Any) -> Any:
    """Give a widget its first value (never overwrites a user's); returns the current one."""
    return st.session_state.setdefault(key, default)


def set_widget(key: str, value_: Any) -> None:
    st.session_state[key] = value_


def forget_widget(key: str) -> None:
    st.session_state.pop(key, None)


# --- the optimiser's grid -------------------------------------------------------------------------------


def grid_keys() -> list[str]:
    """The parameters the Optimize page varies (grid keys and rule.<i>)."""
    return list(st.session_state.get("grid.keys", []))


def set_grid_keys(keys: list[str]) -> None:
    st.session_state["grid.keys"] = list(keys)


def grid_range(name: str) -> tuple[float, float, float]:
    """A grid key's (from, to, step) as the Optimize page holds it, initialised from the defaults."""
    ss = st.session_state
    if f"grid.{name}.lo" not in ss:
        lo, hi, step = default_range(session.get().rule, name)
        ss[f"grid.{name}.lo"], ss[f"grid.{name}.hi"], ss[f"grid.{name}.st"] = float(lo), float(hi), float(step)
    return ss[f"grid.{name}.lo"], ss[f"grid.{name}.hi"], ss[f"grid.{name}.st"]


def grid_spec_text() -> str:
    """The grid as a link writes it: key:from:to:step, comma-separated."""
    spec = {}
    for name in st.session_state.get("grid.keys", []):
        try:
            spec[name] = grid_range(name)
        except InputError:  # a rule.<i> the current rule no longer has
            continue
    return format_grid_spec(spec)


# --- widgets from the table ---------------------------------------------------------------------------------


def param_widget(path: str, where=st, disabled: bool = False, help: str | None = None):
    """The widget of a table parameter, keyed by its state key and never given `value=`."""
    p = table.TABLE[path]
    k = key(path)
    tip = help or p.help or None
    if p.kind is bool:
        return where.checkbox(p.label, key=k, disabled=disabled, help=tip, persist_state=KEEP)
    if p.choices or path in CHOICE_LABELS:  # a choice, or free text with suggestions (a typed value is kept)
        labels = CHOICE_LABELS.get(path, {})
        current = value(path)
        options = p.choices or (*labels, *([current] if current not in labels else []))
        return where.selectbox(
            p.label,
            options,
            key=k,
            disabled=disabled,
            help=tip,
            persist_state=KEEP,
            format_func=lambda c: labels.get(c, c),
            accept_new_options=not p.choices,
        )
    if p.kind is str:  # free text: a rule
        empty = p.off_word if p.off else "none"
        return where.text_input(
            p.label,
            key=k,
            disabled=disabled,
            help=tip,
            persist_state=KEEP,
            max_chars=None if p.hi is None else int(p.hi),
            placeholder=empty,
        )
    number = int if p.kind is int else float
    assert p.lo is not None and p.hi is not None  # every number has its range in the table
    # Whole numbers show as such; money without cents where the steps are large, else two decimals.
    fmt = None if p.kind is int else "%.0f" if p.unit == "currency" and (p.step or 1) >= 100 else "%.2f"
    if _boxed(p):  # off: an empty box reading "Off" (clear it, or type 0)
        off_tip = f"Empty ({p.off_word.capitalize()}): clear the box or type 0."
        tip = f"{tip} {off_tip}" if tip else off_tip
    return where.number_input(
        app_format.param_title(p),
        min_value=number(0 if p.off else p.lo),
        max_value=number(p.hi),
        step=number(p.step or 1),
        key=k,
        disabled=disabled,
        help=tip,
        format=fmt,
        persist_state=KEEP,
        placeholder=p.off_word.capitalize() if _boxed(p) else None,
        on_change=_zero_is_off if _boxed(p) else None,
        args=(k,),
    )


def _zero_is_off(widget_key: str) -> None:
    """A 0 typed into a box that can be off empties it: the box then reads "Off"."""
    if st.session_state.get(widget_key) == 0:
        st.session_state[widget_key] = None


CHOICE_LABELS: dict[str, dict[str, str]] = {
    "sizing.method": {name: f"{name.replace('_', ' ')}: {text}" for name, text in DESCRIPTIONS.items()},
    "optimize.objective": OBJECTIVES,
    "optimize.mode": {"split": "In/out-of-sample split", "walk_forward": "Walk-forward", "all": "None (all bars)"},
    "load.prices": {
        "raw": "As in the file",
        "adjusted": "Adjusted by adj_close (splits and dividends)",
        "split_adjusted": "Back-adjust the detected splits",
    },
    "load.date_format": {"": "Detect", "dayfirst": "Day first (31/12/2024)", "monthfirst": "Month first (12/31/2024)"},
    "load.intraday": {"refuse": "Refuse (daily bars only)", "daily": "Resample to daily bars"},
}


def progress_callback(bar: Any) -> Callable[[int, int, str], None]:
    """A (done, total, what) callback that moves a Streamlit progress bar (a refresh's symbols)."""
    return lambda done, total, what: bar.progress(done / max(total, 1), text=f"{done:,} of {total:,}: {what}")
