"""Per-event statistics: the Parquet contract (schema.py), writer (parquet.py), summaries."""
