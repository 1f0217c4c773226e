"""The Parquet store: the tables' schemas and column names (``schema``), a cell's Arrow tables
(``cell_tables``), and the store itself (``sweep_store``: atomic per-cell writes, resume,
reading a sweep). Only the driver writes it."""
