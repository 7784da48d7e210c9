"""Request models of the HTTP API, generated from the one parameter table (engine/params.py): no second list
of fields. Each field checks its value with the table's own `check`, so a bad value gets the message the
pages show ("Stop-loss must be 0 (off) or 0.1 to 99 %, not 150.")."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from engine import params as table
from engine.rules import MAX_RULE_CHARS

_STRICT = ConfigDict(extra="forbid")  # a misspelt field is an error naming it, never silently ignored


def _field(p: table.Param) -> tuple[Any, Any]:
    schema: dict[str, Any] = {"x-url-key": p.url}
    if p.choices:
        schema["enum"] = list(p.choices)
    if p.kind is str and p.hi is not None:
        schema["maxLength"] = int(p.hi)
    elif p.kind in (int, float):
        schema["minimum"] = 0 if p.off else p.lo
        schema["maximum"] = p.hi
    unit = f" ({p.unit})" if p.unit else ""
    text = f"{p.label}{unit}: {p.allowed()}." + (f" {p.help}" if p.help else "")
    kind = Annotated[p.kind, BeforeValidator(_json_typed(p))]  # type: ignore[name-defined]  # the row's type
    return kind, Field(p.default, description=text, json_schema_extra=schema)


def _json_typed(p: table.Param):
    """The table's check, after JSON's own types: `true` or `"5"` is not a number, `5` is not text or a flag."""
    wanted = {bool: (bool,), int: (int, float), float: (int, float), str: (str,)}[p.kind]

    def check(value: Any) -> Any:
        if isinstance(value, bool) != (p.kind is bool) or not isinstance(value, wanted):
            kind = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}[p.kind]
            raise ValueError(f"{p.label} must be {kind} ({p.allowed()}), not {json.dumps(value)[:40]}.")
        return p.check(value)

    return check


def _model(name: str, group: str, **extra: Any) -> type[BaseModel]:
    fields = {p.name: _field(p) for p in table.group(group)}
    return create_model(name, __config__=_STRICT, **fields, **extra)  # type: ignore[call-overload]


SizingSettings = _model("SizingSettings", "sizing")
LimitsSettings = _model("LimitsSettings", "limits")
BacktestSettings = _model(
    "BacktestSettings",
    "",
    sizing=(SizingSettings, Field(default_factory=SizingSettings)),
    limits=(LimitsSettings, Field(default_factory=LimitsSettings)),
)
OptimizeSettings = _model("OptimizeSettings", "optimize")


def _form_field(p: table.Param) -> tuple[Any, Any]:
    """A form field: text, parsed as a link's value is (`"50"` is a number, `"true"` a flag)."""
    kind, info = _field(p)
    parse = BeforeValidator(lambda v: p.parse(v) if isinstance(v, str) else p.check(v))
    return Annotated[p.kind, parse], info  # type: ignore[name-defined]


# A form's other fields (the file, `shared`) arrive beside these, so unknown fields are not refused here.
LoadSettings = create_model(
    "LoadSettings",
    **{p.name: _form_field(p) for p in table.group("load")},  # type: ignore[call-overload]
)
MonteCarloSettings = _model("MonteCarloSettings", "montecarlo")
EventSettings = _model("EventSettings", "events")


def library_values(group: str, settings: BaseModel) -> dict[str, Any]:
    """A group's settings as the library takes them, by field name (0 or empty -> None where that is off)."""
    return table.library_fields({p.path: getattr(settings, p.name) for p in table.group(group)})


def values_by_path(settings: BaseModel) -> dict[str, Any]:
    """BacktestSettings -> user values by table path (`sizing.risk_pct`), as `params_from_values` takes them."""
    out = {}
    for p in table.backtest_params():
        holder = getattr(settings, p.group) if p.group else settings
        out[p.path] = getattr(holder, p.name)
    return out


Rule = Annotated[str, Field(min_length=1, max_length=MAX_RULE_CHARS, examples=["rsi(14) < 30 and close > sma(200)"])]
DatasetId = Annotated[str, Field(description='A dataset id from POST /api/data, or "sample" / "synthetic".')]


class Signal(BaseModel):
    model_config = _STRICT
    symbol: str
    date: str


class ScanRequest(BaseModel):
    model_config = _STRICT
    data: DatasetId = "sample"
    rule: Rule
    limit: int = Field(1000, ge=1, le=100_000, description="Most signals to return, newest first.")
    date: str | None = Field(
        None,
        max_length=40,
        description="YYYY-MM-DD: the screen on that bar (the last on or before it): its matches ranked, and the "
        "symbols that entered and left since the bar before. 'latest' for the last bar.",
    )


class BacktestRequest(BaseModel):
    model_config = _STRICT
    data: DatasetId = "sample"
    rule: Rule | None = Field(None, description="Entry rule; or give `signals` instead.")
    signals: list[Signal] | None = Field(None, max_length=1_000_000, description="(symbol, date) entries.")
    params: BacktestSettings = Field(default_factory=BacktestSettings)  # type: ignore[valid-type]


class RuleRun(BaseModel):
    """What every rule-based run names: the dataset, the entry rule and the backtest parameters."""

    model_config = _STRICT
    data: DatasetId = "sample"
    rule: Rule
    params: BacktestSettings = Field(default_factory=BacktestSettings)  # type: ignore[valid-type]


class OptimizeRequest(RuleRun):
    grid: dict[str, tuple[float, float, float]] = Field(
        ...,
        description="Grid key -> [from, to, step]; keys as in the parameter table or rule.<i>. A step of 0 is a "
        "continuous range: random and tpe search try any value in it (a grid needs steps).",
        examples=[{"stop_loss": [2, 10, 2], "take_profit": [5, 25, 5]}],
    )
    settings: OptimizeSettings = Field(default_factory=OptimizeSettings)  # type: ignore[valid-type]


class MonteCarloRequest(RuleRun):
    settings: MonteCarloSettings = Field(default_factory=MonteCarloSettings)  # type: ignore[valid-type]


class EventsRequest(BaseModel):
    """An event study: what each signal of a rule did over the next bars (the Scanner's What happened next)."""

    model_config = _STRICT
    data: DatasetId = "sample"
    rule: Rule
    settings: EventSettings = Field(default_factory=EventSettings)  # type: ignore[valid-type]
