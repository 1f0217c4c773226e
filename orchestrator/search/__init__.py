"""Searches over a sweep's axes (``+search=energy_slo``, ``+search=capacity``): trials are
ordinary cells (same ids, store, resume and report), chosen by Optuna a round at a time.

Modules: ``space`` (the sweep's jobs as candidates and their axes), ``outcome`` (a trial's
measured result, typed, from the store, its SLO verdict, and ``SloJudge``, the judgement every
kind shares), ``contracts`` (the ``Goal`` and ``Study`` Protocols the loop and the pick rely on),
``study`` (the Optuna study: sampler, constraints, ask/tell), ``bracket`` (the capacity search's
sampler on a lone rate axis), ``energy_slo`` / ``capacity`` (what each kind minimises, and its
study), ``kinds`` (``SEARCH_KINDS``: each ``SearchKind``'s goal, study, space check and headroom),
``driver`` (the round loop through the runner), ``pick`` (confirmation repeats and the pick),
``record`` (``search.json``), ``answer`` (the lines a search prints at its end), ``entry`` (from
the Hydra sweeper). The ``search.*`` schema is ``orchestrator.config.search``. Optuna is imported
only inside ``study``, on the search path."""
