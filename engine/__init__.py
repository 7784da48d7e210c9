"""Stock scanner and backtesting engine: one dataset in, signals, trades, equity and metrics out.

from engine import load_market, scan, backtest
market = load_market("prices.csv")
result = backtest(market, scan(market, "rsi(14) < 30 and close > sma(200)"), stop_loss=5.0)
"""

from .backtest import BacktestParams, BacktestResult, backtest
from .data import DataError, Market, load_market, load_sample
from .risk import RiskLimits
from .sizing import Sizing
from .synthetic import synthetic_market

__version__ = "0.1.0"
__all__ = [
    "BacktestParams",
    "BacktestResult",
    "DataError",
    "Market",
    "RiskLimits",
    "Sizing",
    "backtest",
    "load_market",
    "load_sample",
    "synthetic_market",
]
