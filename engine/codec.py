"""Results as data-only bytes: nothing read back from disk can run code.

A value is a tree of JSON (None, bool, numbers, text, lists, dicts), NumPy arrays (saved without pickle; bool
arrays such as signal matrices bit-packed),
DataFrames (Parquet), timestamps, and the engine's own result classes from an allow-list, rebuilt field by
field through their constructors. The container is a zip of `tree.json` plus one member per array or frame,
preceded by a magic word and an HMAC-SHA256 of the cache key and the rest under a secret of the install: an
entry forged in this very format, planted, swapped between keys or truncated fails `decode` with CodecError,
and the caller recomputes. A checksum anyone can recompute would not stop a forgery; the secret does.

    blob = encode(result, key, secret)
    decode(blob, key, secret)  -> an equal result
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import math
import zipfile
from typing import Any

import numpy as np
import pandas as pd

from .backtest import BacktestParams, BacktestResult
from .events import EventStudy
from .montecarlo import MonteCarloResult
from .optimize import OptimizationRun, OptimizeResult, WalkForwardResult
from .risk import RiskLimits
from .rules import Signals
from .sizing import Sizing

MAGIC = b"SCANNER-RESULT-2\n"


class CodecError(ValueError):
    """The bytes are not a valid entry for this key (damaged, planted, swapped or from another version)."""


def _allowed() -> dict[str, type]:
    classes = (
        OptimizationRun,
        BacktestParams,
        BacktestResult,
        EventStudy,
        MonteCarloResult,
        OptimizeResult,
        RiskLimits,
        Signals,
        Sizing,
        WalkForwardResult,
    )
    return {cls.__name__: cls for cls in classes}


def _mac(secret: bytes, key: str, payload: bytes) -> bytes:
    return hmac.new(secret, key.encode() + b"\0" + payload, hashlib.sha256).hexdigest().encode()


def encode(value: Any, key: str, secret: bytes) -> bytes:
    """Bytes for `value`, bound to `key` and authenticated with `secret`; CodecError for a type outside the
    allow-list."""
    members: dict[str, bytes] = {}
    tree = {"key": key, "value": _to_tree(value, members)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("tree.json", json.dumps(tree, allow_nan=True))
        for name, data in members.items():
            zf.writestr(name, data)
    payload = buf.getvalue()
    return MAGIC + _mac(secret, key, payload) + b"\n" + payload


def decode(blob: bytes, key: str, secret: bytes) -> Any:
    """The value `encode(value, key, secret)` stored; CodecError unless the bytes are intact, written for `key`
    and authenticated with `secret`."""
    head = len(MAGIC) + 65
    if not blob.startswith(MAGIC) or len(blob) < head:
        raise CodecError("not a result entry")
    digest, payload = blob[len(MAGIC) : head - 1], blob[head:]
    if not hmac.compare_digest(_mac(secret, key, payload), digest):
        raise CodecError("not authenticated (forged, damaged, or written under another secret)")
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            tree = json.loads(zf.read("tree.json"))
            if tree.get("key") != key:
                raise CodecError("entry written for another key")
            return _from_tree(tree["value"], zf, _allowed())
    except CodecError:
        raise
    except Exception as exc:  # any malformed member: not a valid entry
        raise CodecError(f"unreadable entry: {exc!r}"[:200]) from None


def _to_tree(value: Any, members: dict[str, bytes]) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else {"$float": repr(v)}
    if isinstance(value, pd.Timestamp):
        return {"$ts": value.isoformat()}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise CodecError("object arrays are not stored")
        if value.dtype == bool:  # signal matrices: one bit per cell, not a byte
            name = f"b{len(members)}.npy"
            buf = io.BytesIO()
            np.save(buf, np.packbits(value, axis=None), allow_pickle=False)
            members[name] = buf.getvalue()
            return {"$bits": name, "shape": list(value.shape)}
        name = f"a{len(members)}.npy"
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        members[name] = buf.getvalue()
        return {"$array": name}
    if isinstance(value, pd.DataFrame):
        name = f"f{len(members)}.parquet"
        members[name] = value.to_parquet(index=True)
        return {"$frame": name}
    if isinstance(value, list | tuple):
        return {"$list" if isinstance(value, list) else "$tuple": [_to_tree(v, members) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise CodecError("dict keys must be text")
        return {"$dict": {k: _to_tree(v, members) for k, v in value.items()}}
    if dataclasses.is_dataclass(value) and type(value).__name__ in _allowed():
        fields = {f.name: _to_tree(getattr(value, f.name), members) for f in dataclasses.fields(value)}
        return {"$class": type(value).__name__, "fields": fields}
    raise CodecError(f"{type(value).__name__} is not a storable type")


def _from_tree(node: Any, zf: zipfile.ZipFile, allowed: dict[str, type]) -> Any:
    if not isinstance(node, dict):
        return node
    if "$float" in node:
        return float(node["$float"])
    if "$ts" in node:
        return pd.Timestamp(node["$ts"])
    if "$bits" in node:
        shape = tuple(int(n) for n in node["shape"])
        packed = np.load(io.BytesIO(zf.read(node["$bits"])), allow_pickle=False)
        return np.unpackbits(packed, count=math.prod(shape)).astype(bool).reshape(shape)
    if "$array" in node:
        return np.load(io.BytesIO(zf.read(node["$array"])), allow_pickle=False)
    if "$frame" in node:
        return pd.read_parquet(io.BytesIO(zf.read(node["$frame"])))
    if "$list" in node:
        return [_from_tree(v, zf, allowed) for v in node["$list"]]
    if "$tuple" in node:
        return tuple(_from_tree(v, zf, allowed) for v in node["$tuple"])
    if "$dict" in node:
        return {str(k): _from_tree(v, zf, allowed) for k, v in node["$dict"].items()}
    if "$class" in node:
        cls = allowed.get(node["$class"])
        if cls is None:
            raise CodecError(f"class {node['$class']!r} is not allowed")
        return cls(**{k: _from_tree(v, zf, allowed) for k, v in node["fields"].items()})
    raise CodecError("unknown node")
