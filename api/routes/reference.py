"""/api/params: the parameter table, open to every caller (it holds no data)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from engine import params as table

from ..serialize import clean

router = APIRouter(prefix="/api")


@router.get("/params", tags=["reference"])
def parameters() -> list[dict[str, Any]]:
    """The parameter table: path, URL key, label, unit, default, range, whether 0 is off, grid range."""
    return [
        clean(
            {
                "path": p.path,
                "url": p.url,
                "label": p.label,
                "unit": p.unit,
                "default": p.default,
                "min": p.lo,
                "max": p.hi,
                "off": p.off,
                "choices": list(p.choices),
                "allowed": p.allowed(),
                "grid": p.grid,
                "help": p.help,
            }
        )
        for p in table.PARAMS
    ]
