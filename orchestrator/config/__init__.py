"""Typed configuration: one dataclass schema per config group, checked before any Ray task.

- ``config.groups``: model, quantization, gpu, workload, sampler, dispatch, store schemas and
  their choice enums (light: engine plug-ins import it).
- ``config.engine``: ``EngineConfig``, gathered from the option schemas the registered engines
  declare (importing it discovers the engine plug-ins).
- ``config.root``: the root ``Config`` Hydra composes, and ``CellConfig``, what one cell runs.
- ``config.overrides``: one-line checks of command-line overrides against the schemas.
- ``config.fields``: declared identity (``setting``), typed loading (``from_dict``), checks.

This package module imports nothing, so a plug-in can import ``config.groups`` while the
registry that imports it is being filled.
"""
