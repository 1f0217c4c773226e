"""Searches over a sweep's axes (``+search=energy_slo``, ``+search=capacity``): trials are
ordinary cells (same ids, store, resume and report), chosen by Optuna a round at a time.

Modules: ``config`` (the ``search.*`` schema), ``space`` (the sweep's jobs as candidates and
Optuna distributions), ``outcome`` (a trial's measured result, typed, from the store, and its
SLO verdict), ``study`` (the Optuna study: sampler, constraints, ask/tell), ``driver`` (the round
loop through the runner), ``energy_slo`` / ``capacity`` (what each kind minimises and picks),
``record`` (``search.json``), ``entry`` (from the Hydra sweeper). Optuna is imported only inside
``study``, on the search path."""
