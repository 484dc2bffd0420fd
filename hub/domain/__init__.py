"""Pure computations (no I/O): the shopping optimiser and the CPI series."""
