"""Sweeps: many independent replay/predict cells into one hive-partitioned Parquet dataset.

`grid` expands a grid (command line or TOML) into cells, `cell` runs one cell and writes
its files, `run` drives the cells on local processes or a Dask cluster, `summarize` reads
a finished dataset back. Only `run`'s Dask executor imports dask/distributed.
"""

from gictools.sweep.grid import Cell, cells_from_args, cells_from_toml  # noqa: F401
