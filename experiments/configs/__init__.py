"""Per-environment benchmark specs (`BENCH`), read by `wmplan bench` via `wmplan.bench.load_spec`."""
