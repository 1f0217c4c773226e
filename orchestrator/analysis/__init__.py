"""Analysis: per-cell metrics maths, roofline, VRAM budget, fits, cost/carbon and the report.

Submodules are imported on use; importing this package imports nothing heavy.
"""
