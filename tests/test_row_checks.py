"""The loader's one-pass price checks (engine/data/_row_kernels.py): each reason on a hand-made row, the
first problem wins, rows with a reason already are left alone, and all-empty rows are missing bars."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data import _row_kernels as rk
from engine.data.build import _RANGE_TOLERANCE

NAN, INF = np.nan, np.inf

ROWS = [  # (open, high, low, close, volume, dividend), the reason expected
    ((10, 11, 9, 10.5, 100, 0), 0),
    ((NAN, NAN, NAN, NAN, 100, 0), 0),  # no prices: a missing bar, not a bad row
    ((10, NAN, 9, 10, 100, 0), rk.SOME_EMPTY),
    ((10, INF, 9, 10, 100, 0), rk.INFINITE),
    ((10, 11, 9, 10, INF, 0), rk.INFINITE),
    ((10, 11, 0, 10, 100, 0), rk.NONPOSITIVE),
    ((10, 9, 11, 10, 100, 0), rk.HIGH_LOW),
    ((12, 11, 9, 10, 100, 0), rk.OUTSIDE),
    ((10, 11, 9, 8.9, 100, 0), rk.OUTSIDE),
    ((10, 11, 9, 11 * (1 + _RANGE_TOLERANCE / 2), 100, 0), 0),  # rounding within the tolerance
    ((10, 11, 9, 10, -1, 0), rk.NEG_VOLUME),
    ((10, 11, 9, 10, NAN, 0), 0),  # no volume is not a problem
    ((10, 11, 9, 10, 100, -0.5), rk.NEG_DIVIDEND),
    ((-1, 9, 11, NAN, -5, -1), rk.SOME_EMPTY),  # several problems: the first in the order is reported
    ((-1, 9, 11, 10, -5, -1), rk.NONPOSITIVE),
]


def _check(rows, reason=None, dividend=True):
    cols = [np.array([r[0][i] for r in rows], float) for i in range(6)]
    reason = np.zeros(len(rows), np.int8) if reason is None else reason
    div = cols[5] if dividend else np.empty(0)
    all_empty = rk.price_problems(*cols[:5], div, reason, _RANGE_TOLERANCE)
    return reason, all_empty


def test_each_row_gets_the_first_problem_it_has():
    reason, all_empty = _check(ROWS)
    assert reason.tolist() == [want for _, want in ROWS]
    assert all_empty.tolist() == [i == 1 for i in range(len(ROWS))]


def test_without_a_dividend_column_a_negative_dividend_is_not_checked():
    reason, _ = _check([ROWS[12]], dividend=False)
    assert reason.tolist() == [0]


@pytest.mark.parametrize("earlier", [1, 3])  # a row flagged before (a bad symbol, a bad date) keeps its reason
def test_a_row_with_a_reason_keeps_it(earlier):
    reason, all_empty = _check([ROWS[6], ROWS[1]], reason=np.array([earlier, earlier], np.int8))
    assert reason.tolist() == [earlier, earlier]
    assert not all_empty.any()
