"""Load, validate and normalise daily OHLCV bars into one `Market`.

Every other module consumes a `Market`; nothing else parses files. Validation happens here, at the edge:
every bad row is found with its line (CSV) or row (Parquet, DataFrame) and reason. With
`on_bad_rows="raise"` (the default) they are reported in one `DataError`; with `"drop"` the rest loads and
`market.dropped_rows` lists what was left out. Files are read with Arrow: columns are typed, symbols and
dates are parsed once per distinct value, and compressed input is limited while it is decompressed.

After loading, likely splits (an overnight price ratio near 2:1, 3:2, 10:1 ... or its inverse) and one-day
moves beyond `outlier_pct` are listed in `market.issues` and `market.warnings`. `prices="adjusted"` scales
OHLC by adj_close/close; `prices="split_adjusted"` back-adjusts the detected splits.

Any other column (pe_ratio, market_cap, sector ...) is an own column: a name in rules, carried forward per
symbol (engine/data/columns.py); `attach_columns` joins a second file of such columns as of each date.
`append` adds recent bars (engine/data/update.py): equal overlap dropped, restated history refused or replaced.
"""

from __future__ import annotations

from ..errors import BadRowsError, DataError, InputError
from .attach import attach_columns
from .build import SAMPLE_PATH, load_market, load_sample, market_from_frame, parse_date_texts
from .columns import describe_columns
from .market import Market, missing_inside
from .quality import detect_outliers, detect_splits
from .read import LoadOptions, max_decompressed_bytes, max_upload_bytes, too_big
from .update import AppendReport, RestatedHistory, append, restated_bars

__all__ = [
    "SAMPLE_PATH",
    "AppendReport",
    "RestatedHistory",
    "BadRowsError",
    "DataError",
    "InputError",
    "LoadOptions",
    "Market",
    "append",
    "restated_bars",
    "attach_columns",
    "describe_columns",
    "detect_outliers",
    "detect_splits",
    "load_market",
    "load_sample",
    "market_from_frame",
    "max_decompressed_bytes",
    "max_upload_bytes",
    "missing_inside",
    "parse_date_texts",
    "too_big",
]
