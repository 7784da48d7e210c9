"""One router per resource: data, families (versions, appends, refreshes), runs (scan and backtest), jobs,
screens (saved screens), reference (the parameter table)."""
