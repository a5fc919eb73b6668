"""Results: records, statistics, claims, reports and gates, from records alone. No torch (tests/test_walls.py)."""
