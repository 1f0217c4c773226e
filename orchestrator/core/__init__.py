"""The types every side of Ray shares: a ``Cell`` (``cell``), its identity and ``cell_id``
(``identity``), the messages that cross Ray (``messages``), what running cells are doing
(``phases``) and the plug-in registry class (``registry``). Imports no Hydra, Ray, engine or
heavy library."""
