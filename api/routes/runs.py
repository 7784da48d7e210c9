"""/api/scan and /api/backtest/run: signals of a rule, and a backtest answered at once (from the run cache on
a repeat), with the dashboard link that reproduces it."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlencode

import pandas as pd
from fastapi import APIRouter, Depends

from engine import params as table
from engine.backtest import BacktestResult, backtest, params_from_values
from engine.budget import backtest_bytes
from engine.data import DataError, Market
from engine.stores import cached_scan, reserved, run_cache

from ..deps import User, dashboard_link, data_id_of, open_dataset, user
from ..models import BacktestRequest, ScanRequest, values_by_path
from ..serialize import clean, records

router = APIRouter(prefix="/api", dependencies=[Depends(user)])


@router.post("/scan", tags=["scan"])
def run_scan(req: ScanRequest, who: User) -> dict[str, Any]:
    """Signals of a rule on a dataset, newest first."""
    market = open_dataset(req.data, who)
    signals = cached_scan(market, req.rule)
    return {
        "count": signals.count,
        "symbols_hit": signals.symbols_hit(),
        "signals": records(signals.table(market, req.limit)),
    }


def _signals_rule(req: BacktestRequest, who: str) -> tuple[str, Any, Market]:
    """(the rule text the run is keyed and listed by, the signals, the market)."""
    if (req.rule is None) == (req.signals is None):
        raise DataError("Give exactly one of `rule` or `signals`.")
    market = open_dataset(req.data, who)
    if req.rule is not None:
        return req.rule, cached_scan(market, req.rule), market
    assert req.signals is not None  # exactly one of the two was given
    if len(req.signals) > market.close.size:
        raise DataError(
            f"{len(req.signals):,} signals are more than the dataset's {market.close.size:,} bars "
            "(symbols x dates); send each (symbol, date) once."
        )
    frame = pd.DataFrame([s.model_dump() for s in req.signals], columns=["symbol", "date"])
    digest = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()[:16]
    return f"({len(frame):,} signals from the API, sha256 {digest})", frame, market


@router.post("/backtest/run", tags=["backtest"])
def run_backtest(req: BacktestRequest, who: User) -> dict[str, Any]:
    """Backtest a rule (or a signal list) with the parameters; served from the run cache on repeat."""
    rule, signals, market = _signals_rule(req, who)
    values = values_by_path(req.params)
    params = params_from_values(values)
    data_id = data_id_of(market, req.data)
    query = table.link_query(data_id, rule, values)
    by_rule = req.rule is not None
    link = urlencode(query) if by_rule else ""
    compute = reserved("backtest", backtest_bytes(market.close.nbytes), lambda: backtest(market, signals, params))
    result, hit = run_cache().run(
        "backtest", market, rule, params, compute, BacktestResult.key_metrics, session=who, link=link
    )
    return {
        "data": data_id,
        "rule": rule,
        "cache_hit": hit,
        "metrics": clean(result.metrics),
        "skipped": result.skipped(),
        "ruined_on": clean(result.ruined_on),
        "link": dashboard_link("backtest", query) if by_rule else None,
        "trades": records(result.trades),
        "equity": records(result.equity),
        "events": records(result.events),
    }
