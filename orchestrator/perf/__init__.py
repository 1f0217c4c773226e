"""The performance model: roofline step costs and VRAM budgets of model x quantization x GPU.

One package used alike by the grid (feasibility before launch), the simulator (step times and
power) and the report (roofline and VRAM tables); it imports only the config schemas, never the
report or analysis libraries. All functions are pure and take the typed config objects.
"""
