"""Stock scanner and backtesting engine: one dataset in, signals, trades, equity and metrics out.

>>> from engine import BacktestParams, backtest, load_sample, monte_carlo, optimize, scan
>>> from engine.montecarlo import trade_returns
>>> market = load_sample()  # six US stocks, 2013-2023, bundled
>>> signals = scan(market, "rsi(14) < 30 and close > sma(200)")
>>> result = backtest(market, signals, stop_loss=5.0, take_profit=10.0)
>>> result.metrics["n_trades"] > 0
True
>>> grid = optimize(market, "rsi(14) < 30", BacktestParams(), {"stop_loss": [3, 5]}, min_trades=0)
>>> sorted(grid.best_params())
['stop_loss']
>>> mc = monte_carlo(trade_returns(result), n_simulations=200, seed=1)
>>> 0.0 <= mc.probability_of_loss() <= 1.0
True
"""

from .backtest import BacktestParams, BacktestResult, backtest
from .data import DataError, Market, attach_columns, load_market, load_sample
from .errors import InputError
from .events import EventStudy, forward_returns
from .factors import FactorStudy, factor_returns
from .montecarlo import monte_carlo
from .optimize import optimize
from .risk import RiskLimits
from .rules import scan
from .sizing import Sizing
from .synthetic import synthetic_market

__version__ = "0.1.0"
__all__ = [
    "BacktestParams",
    "BacktestResult",
    "DataError",
    "EventStudy",
    "FactorStudy",
    "InputError",
    "Market",
    "RiskLimits",
    "Sizing",
    "attach_columns",
    "backtest",
    "factor_returns",
    "forward_returns",
    "load_market",
    "load_sample",
    "monte_carlo",
    "optimize",
    "scan",
    "synthetic_market",
]
