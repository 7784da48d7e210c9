"""The session's one dataset: the built-in ones, a stored one by id, an upload (stored for links through the
server wing), and what follows from it (its flags fixed, symbols left out, columns attached)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import streamlit as st

from app import session
from app.formatting import short
from app.identity import private_by_identity, upload_refusal, user_id
from engine import InputError, Market
from engine.data import BadRowsError, quality
from engine.server import service
from engine.server.datasets import valid_id

log = logging.getLogger("scanner.app")


@st.cache_resource(show_spinner="Loading the sample data...")
def _sample() -> Market:
    return service.builtin("sample")


@st.cache_resource(show_spinner="Generating the synthetic universe...")
def _synthetic() -> Market:
    return service.builtin("synthetic")


def named(data_id: str) -> Market | None:
    """A built-in dataset by name, else a stored one this user may open."""
    if data_id == "sample":
        return _sample()
    if data_id == "synthetic":
        return _synthetic()
    return service.open_dataset(data_id, user_id())


def open_linked(data_id: str) -> None:
    """The dataset a link names; when it is not on this server the pages say so (never the sample instead)."""
    s = session.get()
    found = named(data_id)
    if found is None:
        s.missing_data = data_id
    else:
        s.market, s.data_id = found, data_id


def missing_data_message() -> str | None:
    """Why there is no dataset (a link named one this server does not have), or None."""
    missing = session.get().missing_data
    if missing is None:
        return None
    if missing.startswith("family:"):
        return (
            f"The link names the family `{short(missing.removeprefix('family:'))}`, which is not on this server or "
            "is private to its owner; ask them to share it (Data page, **Share the family**), then open the link "
            "again. Nothing was run."
        )
    if not valid_id(missing):
        return (
            f"The link names the dataset `{short(missing)}`, which is not a dataset id. "
            "Load a dataset on the **Data** page."
        )
    # A private id and an unknown one get the same answer: ids are content fingerprints, so a different answer
    # would tell anyone whether a file is on this server.
    why = (
        " This server keeps no datasets (SCANNER_CACHE_DIR is empty), so links work only within the session that "
        "loaded the data; cross-session links need SCANNER_CACHE_DIR."
        if service.datasets().directory is None
        else " It may be unknown, deleted or evicted (storage limit)."
    )
    return (
        f"The dataset this link names (`{missing}`) is not on this server, or it is private to its owner; ask them "
        f"to share it (Data page, **List it for the team**), then open the link again.{why} Or upload the file again "
        "on the **Data** page: the same file gets the same id, so the link works again. Nothing was run."
    )


def market() -> Market | None:
    return session.get().market


def data_id() -> str | None:
    return session.get().data_id


def require_market() -> Market:
    """The dataset, or a clear message and a stop when a link named one this server does not have."""
    m = market()
    if m is None:
        st.error(missing_data_message() or "No dataset is loaded: load one on the **Data** page.")
        st.page_link("../pages/data.py", label="Go to the Data page →", icon=":material/database:")
        st.stop()
    return m


def set_market(new: Market, new_id: str) -> None:
    """Replace the one dataset; results computed on the old one no longer apply."""
    s = session.get()
    s.market, s.data_id, s.missing_data = new, new_id, None
    s.result = s.opt = None
    s.signals.clear()


def load_upload(uploaded, on_bad_rows: str = "raise", **options) -> str | None:
    """Load an uploaded file and store it for links; on bad data return the loader's message and keep the
    current dataset (`bad_rows` then says how many rows could be left out)."""
    session.get().bad_rows = 0
    return _use_upload(
        uploaded, "load", lambda: service.ingest(uploaded, uploaded.name, user_id(), on_bad_rows=on_bad_rows, **options)
    )


def attach_error() -> str | None:
    """Why the last file of columns could not be attached, or None."""
    return session.get().attach_error


def attach_upload(uploaded) -> str | None:
    """Join an uploaded file of own columns (symbol, date, pe_ratio, ...) to the dataset as of each date: a new
    dataset, stored for links. Returns (and remembers for `attach_error`) why the file cannot be used."""
    error = _use_upload(uploaded, "join", lambda: service.attach(require_market(), uploaded, user_id()))
    session.get().attach_error = error
    return error


def _use_upload(uploaded, what: str, load: Callable[[], service.Stored]) -> str | None:
    """Make a new dataset from an upload (the server wing reserves its memory first) and use it; the loader's
    message when the file cannot be used (the current dataset stays)."""
    refused = upload_refusal()
    if refused is not None:
        return refused
    try:
        new = load()
    except BadRowsError as exc:
        session.get().bad_rows = len(exc.rows)
        return str(exc)
    except InputError as exc:
        return str(exc)
    except Exception:  # a loader bug must not take the page down; it is logged for us
        log.exception("unexpected error in the %s of %s", what, uploaded.name)
        return f"An unexpected error stopped the {what} (it has been logged). Try exporting the file again as CSV."
    _use_stored(new)
    return None


def exclude_symbols(symbols: list[str]) -> None:
    """Drop symbols (e.g. those with flagged outliers) from the dataset: a new dataset, stored for links (the
    family's next version when this is its latest)."""
    _use_stored(service.store_fixed(require_market().without(symbols), data_id(), user_id()))


def fix_flag(kind: str, symbol: str, date: Any) -> None:
    """Fix one flagged bar ('adjust' a split, 'drop' the bar): a new dataset, stored for links (the family's
    next version when this is its latest)."""
    _use_stored(service.store_fixed(quality.fix_flag(require_market(), kind, symbol, date), data_id(), user_id()))


def _use_stored(new: service.Stored) -> None:
    """Use a new dataset (stored for links; a broken store costs the links, never the data)."""
    session.get().store_warning = (
        None
        if new.not_stored is None
        else f"This dataset is loaded but not stored on the server ({new.not_stored}): links to it work only in "
        "this session."
    )
    set_market(new.market, new.data_id)


def store_warning() -> str | None:
    """Why the current upload could not be stored on the server, or None."""
    return session.get().store_warning


def datasets():
    """The server's dataset store (listings; each checked against the viewer)."""
    return service.datasets()


def is_private(ds_id: str | None) -> bool:
    """Is this the user's own stored dataset, not shared with the team (so a teammate's link opens nothing)?"""
    if ds_id is None or ds_id in ("sample", "synthetic"):
        return False
    info = service.dataset_listing(ds_id, user_id())
    return info is not None and info.owner == user_id() and not info.shared and private_by_identity()


def can_open(ds_id: str) -> bool:
    """Whether this user may open a dataset id (built-in, their own, shared or uploaded without identity)."""
    return service.open_dataset(ds_id, user_id()) is not None


def open_stored(ds_id: str) -> bool:
    """Open a dataset by id (built in, or stored and open to this user); False when it cannot be."""
    new = named(ds_id)
    if new is None:
        return False
    set_market(new, ds_id)
    return True


def use_sample() -> None:
    set_market(_sample(), "sample")


def use_synthetic() -> None:
    set_market(_synthetic(), "synthetic")


def upload_error() -> str | None:
    return session.get().upload_error


def set_upload_error(text: str | None) -> None:
    session.get().upload_error = text


def forget_upload() -> None:
    """No file in the uploader: its error, and which file loaded last, belong to no later visit."""
    s = session.get()
    s.upload_error = None
    s.loaded["upload"] = None


def upload_is_new(attempt: tuple, uploader: str = "upload") -> bool:
    """Is this (file, options) not the one `uploader` loaded last? Remembers it: each file and option set loads
    once (the data uploader and the attach-columns uploader each remember their own)."""
    loaded = session.get().loaded
    if loaded.get(uploader) == attempt:
        return False
    loaded[uploader] = attempt
    return True


def bad_rows() -> int:
    """How many rows the last refused upload could leave out (0: none to offer)."""
    return session.get().bad_rows
