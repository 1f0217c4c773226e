"""A cell's window energy attributed to its engine steps, to its requests, and to prefill and
decode (docs/energy_attribution.md has the model and its limits).

1. **The energy curve** E(t) (J, the cell's monotonic clock): the GPU's energy counter, whose
   value changes every few tens of ms, anchored at the first sample of each new value, and shaped
   between two anchors by the integral of the instant power samples, rescaled to the counter's
   delta (``energy_curve``); between samples, linear. Without a counter the integral alone.
2. **Steps**: a step's gross energy is E(end) - E(start) over the part of it inside the measured
   window (a modeled step's own energy, ``StepTimeline.energy_j``, in proportion to that part);
   its net energy that less idle W x that part's length.
3. **Within a step** (``RooflineSplit``): the prefill share is the step's prefill compute time
   (its prompt tokens' FLOPs at the GPU's peak) over the step's roofline time (the larger of its
   bytes at the peak bandwidth — the weights once, the KV cache its requests attend over, the KV
   it writes — and all its FLOPs at the peak): a decode token riding along a big prefill costs
   little, a prefill token in a decode-bound step costs its FLOPs' share. The prefill part goes to
   the step's requests by prompt tokens; the decode part by the bytes each decoding request makes
   the step read: its decode tokens' share of the weights plus its own KV context (a request deep
   into a long context costs more per token than one just started: on the H100, pricing a KV
   byte like a weight byte took the prediction of long-prompt cells from 22-32% under to 4-6%).
4. **Conservation**: the window's energy (the runs row's counter delta) = the steps' energy + the
   energy outside steps (the GPU between steps, and the curve's difference from the counter delta
   at the window's edges), exactly, gross and net; each request's energy is the sum of its shares.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Tuple

import numpy as np

from orchestrator.core.steps import StepTimeline
from orchestrator.energy.base import PowerTrace
from orchestrator.perf import roofline

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig


def energy_curve(trace: PowerTrace) -> Tuple[np.ndarray, np.ndarray]:
    """(sample times s, E J) of the trace's energy curve (see module doc)."""
    t = trace.t_ns.astype(np.float64) / 1e9
    p = np.nan_to_num(trace.power_w.astype(np.float64))
    integral = np.concatenate([[0.0], np.cumsum(np.diff(t) * (p[1:] + p[:-1]) / 2)]) if t.size else t
    e = trace.energy_mj.astype(np.float64) / 1e3 if trace.energy_mj.size == t.size else np.full(t.size, np.nan)
    if not t.size or np.all(np.isnan(e)):
        return t, integral
    anchors = np.flatnonzero(np.concatenate([[True], np.diff(e) != 0]))
    curve = np.empty_like(t)
    for a, b in zip(anchors, list(anchors[1:]) + [t.size - 1]):
        d_int, d_e = integral[b] - integral[a], e[b] - e[a]
        if a == anchors[-1]:  # after the last update: the power's shape, unscaled
            curve[a:] = e[a] + (integral[a:] - integral[a])
            break
        if d_int > 0:
            curve[a:b] = e[a] + (integral[a:b] - integral[a]) * (d_e / d_int)
        else:
            curve[a:b] = e[a] + (t[a:b] - t[a]) * (d_e / max(t[b] - t[a], 1e-12))
    return t, curve


@dataclass(frozen=True)
class RooflineSplit:
    """The prefill share of a step's energy and each request's part of it (see module doc, 3.),
    from the roofline of the cell's model, quantization and GPU at the datasheet peaks (shares:
    the peaks' level cancels)."""

    model: roofline.StepModel
    peak_flops: float
    bandwidth: float

    @classmethod
    def of(cls, cfg: "CellConfig") -> "RooflineSplit":
        return cls(roofline.step_model(cfg.model, cfg.quantization), roofline.peak_flops(cfg.gpu, cfg.quantization),
                   roofline.bandwidth_bytes_s(cfg.gpu))

    def prefill_share(self, prefill: np.ndarray, decode: np.ndarray, context: Optional[np.ndarray] = None) -> np.ndarray:
        """Per step, prefill's share of its energy; ``context``: the KV tokens its requests attend
        over (0 where not given)."""
        prefill, decode = prefill.astype(float), decode.astype(float)
        context = np.zeros_like(prefill) if context is None else context.astype(float)
        cost = self.model.cost(prefill + decode, context)  # type: ignore[arg-type]  # linear: arrays broadcast
        t_prefill = prefill * self.model.flops_per_new_token / self.peak_flops
        t_step = np.maximum(np.maximum(cost.flops / self.peak_flops, cost.bytes / self.bandwidth), 1e-30)
        return np.where(decode == 0, (prefill > 0).astype(float), np.clip(t_prefill / t_step, 0.0, 1.0))

    def entry_parts(self, steps: StepTimeline) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prefill share per step, each entry's part of its step's energy as prefill, as decode):
        prompt tokens share the prefill part; decoding requests the rest by the bytes each makes
        the step read (its decode tokens' share of the weights, its own KV context)."""
        k = steps.step_of_entry
        context = steps.context_of_entry.astype(float)
        step_context = np.bincount(k, weights=context, minlength=len(steps))
        share = self.prefill_share(steps.prefill_tokens, steps.decode_tokens, step_context)
        pre_tok, dec_tok = steps.prefill_tokens[k].astype(float), steps.decode_tokens[k].astype(float)
        w_pre = np.divide(steps.request_prefill, pre_tok, out=np.zeros(k.size), where=pre_tok > 0) * share[k]
        dec = steps.request_decode.astype(float)
        weights = np.divide(dec, dec_tok, out=np.zeros(k.size), where=dec_tok > 0) * self.model.weight_bytes
        weights += np.where(dec > 0, self.model.kv_bytes_per_token * (context + dec), 0.0)
        step_weights = np.bincount(k, weights=weights, minlength=len(steps))[k]
        w_dec = np.divide(weights, step_weights, out=np.zeros(k.size), where=step_weights > 0) * (1 - share[k])
        return share, w_pre, w_dec


@dataclass
class Attribution:
    """What ``attribute`` found: per step (gross J, net J, prefill share), per request (by index:
    prefill and decode J, gross and net) and what no step holds."""

    step_energy_j: np.ndarray
    step_net_energy_j: np.ndarray
    step_prefill_share: np.ndarray
    request_index: np.ndarray
    prefill_j: np.ndarray
    decode_j: np.ndarray
    net_prefill_j: np.ndarray
    net_decode_j: np.ndarray
    window_energy_j: float
    outside_steps_j: float
    net_outside_steps_j: Optional[float]

    @property
    def prefill_energy_share(self) -> float:
        """Prefill's share of the steps' net energy (gross where no idle draw is known)."""
        net = np.nansum(self.net_prefill_j) + np.nansum(self.net_decode_j)
        if np.isfinite(net) and net > 0:
            return float(np.nansum(self.net_prefill_j) / net)
        gross = np.sum(self.prefill_j) + np.sum(self.decode_j)
        return float(np.sum(self.prefill_j) / gross) if gross > 0 else float("nan")


def attribute(steps: StepTimeline, trace: PowerTrace, t0_s: float, t1_s: float, window_energy_j: float,
              idle_power_w: Optional[float], split: RooflineSplit) -> Attribution:
    """Attribute the window's energy (see module doc); ``window_energy_j``: the runs row's gross J."""
    a, b = np.clip(steps.start_s, t0_s, t1_s), np.clip(steps.end_s, t0_s, t1_s)
    if steps.energy_j is not None:  # modeled: constant power over each step
        length = steps.end_s - steps.start_s
        inside = np.divide(b - a, length, out=(b > a).astype(float), where=length > 0)
        gross = steps.energy_j * inside
    else:
        t, curve = energy_curve(trace)
        gross = np.interp(b, t, curve) - np.interp(a, t, curve)
    idle = 0.0 if idle_power_w is None else float(idle_power_w)
    net = gross - idle * (b - a)
    share, w_pre, w_dec = split.entry_parts(steps)
    k = steps.step_of_entry
    requests, slot = np.unique(steps.request_index, return_inverse=True)

    def per_request(values: np.ndarray) -> np.ndarray:
        return np.bincount(slot, weights=values, minlength=requests.size)

    net_window = window_energy_j - idle * (t1_s - t0_s)
    return Attribution(
        step_energy_j=gross, step_net_energy_j=net, step_prefill_share=share, request_index=requests,
        prefill_j=per_request(w_pre * gross[k]), decode_j=per_request(w_dec * gross[k]),
        net_prefill_j=per_request(w_pre * net[k]), net_decode_j=per_request(w_dec * net[k]),
        window_energy_j=float(window_energy_j), outside_steps_j=float(window_energy_j - gross.sum()),
        net_outside_steps_j=None if idle_power_w is None else float(net_window - net.sum()),
    )
