"""The whole grid answered by measuring a part of it (issue 31): the simulator's prediction of
every cell corrected by what the measured cells say about its error, with a prediction interval
(``predictor``), and the choice of which cells to measure next (``selection``).

No heavy import here: the modules use numpy only.
"""
