"""What a user can get wrong, as one family: every face catches `InputError` and shows its message as it is
(the API answers 422). Each message names what is wrong and how to fix it."""

from __future__ import annotations

import pandas as pd


class InputError(ValueError):
    """Input the engine cannot use: data, a parameter value or a rule. The message is meant for the user."""


class DataError(InputError):
    """Bad input data, or a dataset, symbol or date that is not there."""


class BadRowsError(DataError):
    """Rows that cannot be loaded; `rows` lists each (line, symbol, date, reason). Load again with
    on_bad_rows="drop" to leave them out."""

    def __init__(self, message: str, rows: pd.DataFrame) -> None:
        super().__init__(message)
        self.rows = rows


class ParamError(InputError):
    """A parameter value outside its table entry; the message names the parameter, the value and the range."""


class RuleError(InputError):
    """A rule that cannot be parsed or uses something not on the whitelist."""
