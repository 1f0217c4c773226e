"""Plug-ins of one kind (engines, energy samplers): classes marked with a ``register`` decorator
and found by a ``Registry`` that imports their modules.

A plug-in is a class in a module of its package (``orchestrator/engines/``, ``orchestrator/energy/``)
or of another installed distribution that names it under the package's entry-point group
(``orchestrator.engines`` / ``orchestrator.samplers`` in its metadata). The decorator only marks
the class (``registers("vllm")`` sets its ``name``): a plug-in module never imports the registry
that finds it, so discovery (registry -> plug-in modules) is the one direction of the dependency.
Modules are imported the first time the registry is asked for anything; they must not import
heavy libraries (vllm, torch, pynvml) at module level — a plug-in imports those inside its
methods, on the worker.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from types import ModuleType
from typing import Callable, Dict, Generic, Iterator, List, Tuple, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T", bound=type)
MARK = "__plugin_name__"


def registers(name: str) -> Callable[[T], T]:
    """Class decorator marking a plug-in class as the plug-in ``name`` (sets ``cls.name``)."""

    def decorate(cls: T) -> T:
        setattr(cls, "name", name)
        setattr(cls, MARK, name)
        return cls

    return decorate


def _marked(obj: object) -> bool:
    return isinstance(obj, type) and MARK in vars(obj)


class Registry(Generic[T]):
    """Plug-in classes by name, found in ``package`` and the ``entry_point_group``. One name may
    hold several classes that differ in what they run (vLLM: one for static batches, one for
    served traffic); ``variants(name)`` lists them, in module order, then definition order."""

    def __init__(self, kind: str, package: str, entry_point_group: str, base: type):
        self.kind = kind
        self.package = package
        self.entry_point_group = entry_point_group
        self.base = base
        self._by_name: Dict[str, List[T]] = {}
        self._discovered = False

    def discover(self) -> None:
        """Import every module of the package (sub-packages import their own plug-in modules),
        collect the marked subclasses of ``base``, then every entry point of the group (once)."""
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        prefix = self.package + "."
        for name in sorted(m for m in list(sys.modules) if m.startswith(prefix)):
            self._collect_module(sys.modules[name])
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.entry_point_group):
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken third-party plug-in must not take the others down
                log.warning("%s plug-in %s failed to load: %s", self.kind, ep.name, exc)
                continue
            if isinstance(loaded, ModuleType):
                self._collect_module(loaded)
            elif _marked(loaded):
                self._add(loaded)

    def _collect_module(self, module: ModuleType) -> None:
        for obj in list(vars(module).values()):
            if _marked(obj) and obj.__module__ == module.__name__:
                self._add(obj)

    def _add(self, cls: T) -> None:
        if not issubclass(cls, self.base):
            raise TypeError(f"{cls.__module__}.{cls.__qualname__} is marked as a {self.kind} but does not "
                            f"derive {self.base.__qualname__}")
        variants = self._by_name.setdefault(getattr(cls, MARK), [])
        if cls not in variants:
            variants.append(cls)

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
