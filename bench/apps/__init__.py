"""The servers the suite starts: the Python floor (baseline) and the gateway with bench-only hooks."""
