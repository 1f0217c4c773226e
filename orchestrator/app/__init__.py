"""The command line: checks of ``argv`` before Hydra composes (``argv``) and Hydra's task function
and sweeper body (``hydra_entry``). The top of the runtime: nothing imports it but the entry
points (``python -m orchestrator``, the sweeper plug-in, ``python -m orchestrator.submit``)."""
