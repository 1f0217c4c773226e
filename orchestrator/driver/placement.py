"""Where tasks can run: the cluster's GPU types and live nodes, what a unit's task asks of a
node, whether any node could ever run it, and ``engine=auto``'s choice per GPU type (probed on a
node of that type)."""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from orchestrator.core.cell import Cell, EngineChoice
from orchestrator.core.messages import UnitSpec
from orchestrator.energy.gpuinfo import local_gpu_uuids
from orchestrator.engines import auto_candidates, launched_engine
from orchestrator.engines.base import GpuUse
from orchestrator.errors import ConfigError


def gpu_types() -> Dict[str, bool]:
    """accelerator type -> the cluster has GPUs of it."""
    import ray

    resources = ray.cluster_resources()
    has_gpus = resources.get("GPU", 0) > 0
    return {k.split(":", 1)[1]: has_gpus for k in resources if k.startswith("accelerator_type:")}


def _module_versions(modules: Tuple[str, ...]) -> Dict[str, Tuple[bool, str]]:
    """module -> (importable, why) on this node (package metadata: nothing is imported)."""
    import importlib.util
    from importlib.metadata import version

    out: Dict[str, Tuple[bool, str]] = {}
    for module in modules:
        if importlib.util.find_spec(module) is None:
            out[module] = (False, f"{module} is not installed there")
            continue
        try:
            out[module] = (True, f"{module} {version(module)}")
        except Exception as exc:  # pragma: no cover - broken install
            out[module] = (False, f"{module} is broken there: {exc}")
    return out


def _probe(t: str, modules: Tuple[str, ...], timeout_s: float) -> Dict[str, Tuple[bool, str]]:
    """``_module_versions`` on a node of accelerator type ``t`` (every module unusable, with the
    reason, when the probe fails)."""
    import ray

    if not modules:
        return {}
    probe = ray.remote(num_cpus=0)(_module_versions)
    try:
        return ray.get(probe.options(resources={f"accelerator_type:{t}": 0.001}).remote(modules), timeout=timeout_s)
    except Exception as exc:
        return {m: (False, f"probe failed: {type(exc).__name__}") for m in modules}


def auto_choice(t: str, offered: bool, found: Mapping[str, Tuple[bool, str]]) -> Optional[EngineChoice]:
    """``engine=auto``'s choice for accelerator type ``t`` (``offered``: the cluster has GPUs of
    it; ``found``: module -> (importable, why) on a node of it): the usable candidates by
    ``auto_rank``, the first with the others as its ``fallbacks``; an engine that uses no GPU
    only where no engine that can use one is usable (see ``engines.base``)."""
    usable: List[EngineChoice] = []
    why_not: List[str] = []
    for cls in auto_candidates():
        if cls.gpu is GpuUse.none:
            if not usable:
                usable.append(EngineChoice(cls.name, "; ".join(why_not) or f"{cls.name} runs anywhere"))
            continue
        if not offered:
            why_not[:] = [f"the Ray cluster offers no {t} GPU"]
            continue
        missing = [found[m][1] for m in cls.auto_modules if not found[m][0]]
        if missing:
            why_not.append(f"a {t} node has no usable {', '.join(cls.auto_modules)} ({'; '.join(missing)})")
            continue
        usable.append(EngineChoice(cls.name, f"a {t} node has {', '.join(found[m][1] for m in cls.auto_modules)}"))
    if not usable:
        return None
    return replace(usable[0], fallbacks=tuple(usable[1:]))


def resolve_auto(types: List[str], probe_timeout_s: float = 120.0) -> Dict[str, EngineChoice]:
    """accelerator type -> ``auto_choice`` for ``engine=auto`` cells of that type, the engines'
    modules probed on a node of that type (so a head without GPUs does not force simulation)."""
    offered = gpu_types()
    modules = tuple(sorted({m for cls in auto_candidates() if cls.gpu is not GpuUse.none for m in cls.auto_modules}))
    out: Dict[str, EngineChoice] = {}
    for t in types:
        found = _probe(t, modules, probe_timeout_s) if offered.get(t) else {}
        choice = auto_choice(t, bool(offered.get(t)), found)
        if choice is not None:
            out[t] = choice
    return out


def on_gpu(cell: Cell, offered: Mapping[str, bool]) -> bool:
    cls = launched_engine(cell)
    return cls.gpu is GpuUse.required or (cls.gpu is GpuUse.optional and offered.get(cell.config.gpu.accelerator_type,
                                                                                     False))


def task_resources(unit: UnitSpec, place_as_gpu: bool) -> Dict[str, float]:
    """What a unit's task asks of a node (Ray resource names): a task's resources all come from
    one node, so a cell over N GPUs (``tensor_parallel_size``) gets N GPUs of one node."""
    res = {"CPU": 1.0}
    if unit.on_gpu or place_as_gpu:
        res.update({"GPU": float(unit.gpus), f"accelerator_type:{unit.cells[0].config.gpu.accelerator_type}": 0.001})
    return res


def live_nodes() -> List[Dict[str, float]]:
    """Total resources of each live node of the cluster."""
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def fits_somewhere(resources: Mapping[str, float], nodes: List[Dict[str, float]]) -> bool:
    return any(all(node.get(k, 0.0) >= v for k, v in resources.items()) for node in nodes)


def describe_resources(resources: Mapping[str, float]) -> str:
    """What a task asks for, one line (``CPU=1, GPU=1, accelerator_type:H100=0.001``)."""
    return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))


def describe_nodes(nodes: List[Dict[str, float]]) -> str:
    """One line: each live node's CPUs, GPUs and accelerator type."""
    parts = []
    for node in nodes:
        types = [k.split(":", 1)[1] for k in node if k.startswith("accelerator_type:")]
        gpus = int(node.get("GPU", 0))
        parts.append(f"{int(node.get('CPU', 0))} CPU" + (f", {gpus} GPU {'/'.join(types)}" if gpus else ", no GPU"))
    return f"{len(nodes)} live node(s): " + "; ".join(parts) if parts else "no live node"


def unplaceable(units: List[UnitSpec], place_as_gpu: bool) -> List[Tuple[UnitSpec, str]]:
    """The units no live node can run (resources that exist nowhere; a unit pinned to a node is
    placed already), each with the one line that says what it asks for and what the cluster offers."""
    nodes = live_nodes()
    out = []
    for unit in units:
        res = task_resources(unit, place_as_gpu)
        if unit.node_id is None and not fits_somewhere(res, nodes):
            out.append((unit, f"no node of the local Ray cluster can run it: it asks for {describe_resources(res)}; "
                              f"the cluster offers "
                              f"{describe_nodes(nodes)} (a cluster this command started never grows: attach one with "
                              "dispatch.address to wait for such a node)"))
    return out


def slots(accelerator_type: str, on_gpu: bool) -> int:
    """How many one-GPU tasks of that type the live cluster runs at once (``on_gpu``), else how
    many one-CPU tasks (engines that need no GPU); at least 1."""
    total = 0.0
    for node in live_nodes():
        if not on_gpu:
            total += node.get("CPU", 0.0)
        elif node.get(f"accelerator_type:{accelerator_type}", 0.0) > 0:
            total += node.get("GPU", 0.0)
    return max(1, int(total))


def node_gpu_uuids(probe_timeout_s: float = 60.0) -> Dict[str, List[str]]:
    """Ray node id -> the NVML UUIDs of the GPUs on that node (read there by a zero-CPU task
    pinned to it; [] where NVML has nothing), for every live node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    lister = ray.remote(num_cpus=0)(local_gpu_uuids)
    refs = {n["NodeID"]: lister.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote() for n in ray.nodes() if n.get("Alive")}
    out = {}
    for node, ref in refs.items():
        try:
            found: List[str] = ray.get(ref, timeout=probe_timeout_s)
            out[node] = list(found)
        except Exception:  # a node that cannot answer holds nothing we can use
            out[node] = []
    return out


def node_for_gpus(uuids: Sequence[str], nodes: Mapping[str, Sequence[str]]) -> Optional[str]:
    """The node holding every GPU in ``uuids`` (None: no single node does)."""
    want = set(uuids)
    return next((node for node, have in nodes.items() if want <= set(have)), None)


def place_by_gpus(units: List[UnitSpec]) -> List[UnitSpec]:
    """Units whose engine names the GPUs it measures, pinned to the node that holds them;
    ``ConfigError`` (one line) when no live node holds them all."""
    nodes: Optional[Dict[str, List[str]]] = None
    out = []
    for unit in units:
        first = unit.cells[0]
        uuids = launched_engine(first).placement_gpu_uuids(first.config)
        if uuids:
            nodes = node_gpu_uuids() if nodes is None else nodes
            node = node_for_gpus(uuids, nodes)
            if node is None:
                seen = "; ".join(f"{n[:8]}: {', '.join(g) or 'no GPU'}" for n, g in nodes.items())
                raise ConfigError(f"{unit.engine} cells measure GPUs {','.join(uuids)}: no live Ray node holds them "
                                  f"all (GPUs by node: {seen or 'no live node'})")
            unit = replace(unit, node_id=node)
        out.append(unit)
    return out
