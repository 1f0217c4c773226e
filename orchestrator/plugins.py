"""A registry of plug-ins of one kind (engines, energy samplers), filled by ``register`` decorators.

A plug-in is a class in a module of its package (``orchestrator/engines/``, ``orchestrator/energy/``)
or of another installed distribution that names it under the package's entry-point group
(``orchestrator.engines`` / ``orchestrator.samplers`` in its metadata). Modules are imported the
first time the registry is asked for anything; they must not import heavy libraries (vllm, torch,
pynvml) at module level — a plug-in imports those inside its methods, on the worker.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
from typing import Callable, Dict, Generic, Iterator, List, Tuple, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Plug-in classes by name. One name may hold several classes that differ in what they run
    (vLLM: one for static batches, one for served traffic); ``variants(name)`` lists them."""

    def __init__(self, kind: str, package: str, entry_point_group: str):
        self.kind = kind
        self.package = package
        self.entry_point_group = entry_point_group
        self._by_name: Dict[str, List[T]] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@ENGINES.register("vllm")``. Sets ``cls.name``."""

        def decorate(cls: T) -> T:
            cls.name = name
            variants = self._by_name.setdefault(name, [])
            if all(v.__qualname__ != cls.__qualname__ or v.__module__ != cls.__module__ for v in variants):
                variants.append(cls)
            return cls

        return decorate

    def discover(self) -> None:
        """Import every module of the package, then every entry point of the group (once)."""
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.entry_point_group):
            try:
                ep.load()
            except Exception as exc:  # a broken third-party plug-in must not take the others down
                log.warning("%s plug-in %s failed to load: %s", self.kind, ep.name, exc)

    def names(self) -> Tuple[str, ...]:
        self.discover()
        return tuple(sorted(self._by_name))

    def variants(self, name: str) -> List[T]:
        """The classes registered under ``name`` (KeyError naming the allowed ones)."""
        self.discover()
        if name not in self._by_name:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return list(self._by_name[name])

    def __iter__(self) -> Iterator[T]:
        self.discover()
        for name in sorted(self._by_name):
            yield from self._by_name[name]
