"""intentbench: seeded, measured, statistically honest benchmarks of sequential recommenders."""

__version__ = "0.1.0"
