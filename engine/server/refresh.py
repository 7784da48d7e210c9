"""A family's next version from new bars: appended from a file, or refreshed from its source.

Both end the same way: the bars pass the loader's checks, `engine.data.append` joins them (restated history
refused unless the caller chose to replace it), and a version is made only when something changed. Nothing is
written before the new version is complete (its bars stored, then the family's file replaced in one step): an
outage, a refusal or a killed process leaves the family at its last good version.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..data import AppendReport, DataError, LoadOptions, Market, append, market_from_frame, restated_bars
from ..data.sources import Fetched, Progress, Source, fetch
from .families import Family, FamilyStore

OVERLAP_BARS = 5  # a refresh fetches the last few stored bars again: a source that restated them is caught


@dataclass(frozen=True)
class Outcome:
    """What an append or refresh did: the family (a new version when `changed`), the append's report (None
    when nothing was fetched), the symbols that failed and why, and one sentence for the user."""

    family: Family
    report: AppendReport | None
    failures: dict[str, str]
    message: str

    @property
    def changed(self) -> bool:
        return self.report is not None and self.report.changed


def append_bars(
    families: FamilyStore, family: Family, market: Market, new: Market, by: str, on_restated: str, how: str = "append"
) -> Outcome:
    """`new` appended to the family's latest version (`market`); a version when anything changed."""
    merged, report = append(market, new, on_restated=on_restated)  # type: ignore[arg-type]  # checked by append
    if not report.changed:
        return Outcome(family, report, {}, f"Nothing new: {report.equal_overlap:,} bars equal to the stored ones.")
    family = families.add_version(family.slug, merged, by, how, report)
    return Outcome(family, report, {}, f"Version {len(family.versions)}: {report.summary()}")


def refresh(
    families: FamilyStore,
    family: Family,
    market: Market,
    by: str,
    *,
    partial: bool = False,
    on_restated: str = "refuse",
    progress: Progress | None = None,
) -> Outcome:
    """Fetch from the family's source since just before its last bar and append. Some symbols failing keeps
    the last good version unless `partial` (then the rest is appended and the failures listed)."""
    if not family.source:
        raise DataError(f"The family {family.name!r} has no source: set one (url, sql or yahoo) to refresh it.")
    source = Source.from_settings(family.source)
    start = market.dates[max(0, len(market.dates) - OVERLAP_BARS)]
    fetched = fetch(source, start, progress=progress)
    if fetched.failures and not (partial and len(fetched.bars)):
        keep = f"{fetched.failure_text()}. The family keeps its last good version"
        advice = "" if partial else " (choose partial refreshes to append the symbols that answered)"
        return Outcome(family, None, fetched.failures, keep + advice + ".")
    if not len(fetched.bars):
        return Outcome(family, None, {}, "The source has no bars since the last one.")
    new = _loaded(fetched, family.name)
    restated = restated_bars(market, new) if on_restated == "replace" else None
    if restated is not None and len(restated):  # the restated symbols' whole history, not only the overlap
        whole = fetch(source, None, tuple(_source_symbols(source, set(restated.symbol))))
        new = _loaded(_joined(fetched, whole), family.name)
    outcome = append_bars(families, family, market, new, by, on_restated, how="refresh")
    if fetched.failures:
        return Outcome(outcome.family, outcome.report, fetched.failures, f"{outcome.message} {fetched.failure_text()}.")
    return outcome


def _loaded(fetched: Fetched, name: str) -> Market:
    """The fetched rows through the loader's checks (a bad row is left out and reported, as an upload's)."""
    return market_from_frame(fetched.bars, name=name, options=LoadOptions(on_bad_rows="drop"))


def _source_symbols(source: Source, data_symbols: set[str]) -> list[str]:
    """The source's spelling of symbols the data spells upper-case (the loader normalises them)."""
    return [s for s in source.symbols if s.upper() in data_symbols] or sorted(data_symbols)


def _joined(recent: Fetched, whole: Fetched) -> Fetched:
    """The recent fetch with the whole history of some symbols in place of their recent rows."""
    again = set(whole.bars.symbol)
    bars = pd.concat([recent.bars[~recent.bars.symbol.isin(again)], whole.bars], ignore_index=True)
    return Fetched(bars, {**recent.failures, **whole.failures}, recent.asked)
