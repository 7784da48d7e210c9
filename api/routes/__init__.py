"""One router per resource: data, runs (scan and backtest), jobs, reference (the parameter table)."""
