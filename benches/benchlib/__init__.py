"""Helpers of `benches/bench.py`: one throwaway PostgreSQL, two poolers, pgbench runs,
idle-client holding, and the report. Each module is one concern."""
