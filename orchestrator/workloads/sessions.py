"""``workload.source=sessions``: multi-turn chat sessions.

Sessions arrive open-loop (``workload.arrival`` at ``workload.rate_rps`` sessions per second;
the first ``warmup_sessions`` are warm-up, then every session arriving in the next
``workload.duration_s`` is measured). A session has ``min_turns``..``max_turns`` user turns
(uniform); each turn is sent ``think_s`` after the previous turn's answer (exponential with mean
``think_time_s``, or fixed) and re-sends the whole history: the shared system prompt
(``system_prompt_tokens``, the same tokens in every session), every earlier user turn and answer,
then the new user turn, so later turns find their history in the prefix cache as a chat
application's do. User turns' lengths are drawn from ``workload.input`` and answers' from
``workload.output``, or both come from a ShareGPT file's conversations (``dataset``: its human
turns re-tokenized, its answers' token counts).

The history re-sends each earlier answer as the **planned** answer's tokens (its length is the
one asked for, exact under ``ignore_eos``), so every engine is sent identical prompts; an engine
that cached the answer it generated (vLLM caches decoded blocks too) finds the history up to the
last answer, whose blocks differ: hits are a lower bound of what re-sending the true answer gets.
A session ends early where its next turn would pass the context (``notes``:
``sessions_cut_by_context``). Turns whose send time falls after the window closes are not sent.
What a window offers is what was scheduled in it (later turns are scheduled by the answers), so
the plan's offered rate is NaN: the cell's ``offered_rate_rps`` is its ``scheduled_rate_rps``.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

import numpy as np

from orchestrator.client.workload import (
    SEGMENT_ANSWER, SEGMENT_DATA, SEGMENT_SYSTEM, SEGMENT_USER, RequestSpec, Segment, WorkloadPlan, _open_loop_times,
    draw_lengths,
)
from orchestrator.config.groups import Arrival
from orchestrator.config.workload_sources import Source, ThinkTime
from orchestrator.workloads import register_source
from orchestrator.workloads.context import SourceContext, load_dataset

Turn = Tuple[Segment, int]  # (the user turn's segment, the answer's planned length)


def conversations(ctx: SourceContext, token_ids: Dict[int, Tuple[int, ...]]) -> List[List[Tuple[int, int]]]:
    """A ShareGPT file's conversations as [(user turn row, answer tokens)], the user turns'
    token ids put in ``token_ids`` (rows numbered from 0)."""
    rows = load_dataset(ctx.workload.sessions.dataset, sha256=ctx.workload.sessions.dataset_sha256)
    convs: List[List[Tuple[int, int]]] = []
    current = None
    for prompt in rows:
        user = prompt.messages[-1]["content"]
        answer = len(ctx.prompts.encode(prompt.reference or "")) or 1
        if not convs or prompt.conversation != current:  # the file's own conversations
            convs.append([])
            current = prompt.conversation
        row = len(token_ids)
        token_ids[row] = tuple(ctx.prompts.encode(user)) or (0,)
        convs[-1].append((row, answer))
    return convs


def session_turns(ctx: SourceContext, s: int, rng: np.random.Generator, convs, token_ids) -> List[Turn]:
    """Session ``s``'s user turns and answers' planned lengths."""
    opts = ctx.workload.sessions
    if convs:
        conv = convs[s % len(convs)][:opts.max_turns]
        return [(Segment((SEGMENT_DATA, row), len(token_ids[row])), answer) for row, answer in conv]
    n = int(rng.integers(opts.min_turns, opts.max_turns + 1))
    users = draw_lengths(ctx.workload.input, n, rng)
    answers = draw_lengths(ctx.workload.output, n, rng)
    return [(Segment((SEGMENT_USER, s, k), int(u)), int(a)) for k, (u, a) in enumerate(zip(users, answers))]


@register_source(Source.sessions)
def sessions_plan(ctx: SourceContext) -> WorkloadPlan:
    wl, opts = ctx.workload, ctx.workload.sessions
    rng = np.random.default_rng(ctx.seed)
    starts, phases, start = _open_loop_times(dataclasses.replace(wl, warmup_requests=opts.warmup_sessions), rng)
    token_ids: Dict[int, Tuple[int, ...]] = {}
    convs = conversations(ctx, token_ids) if opts.dataset else []
    system = (Segment((SEGMENT_SYSTEM, 0), opts.system_prompt_tokens, role="system"),) \
        if opts.system_prompt_tokens else ()
    specs: List[RequestSpec] = []
    cut = 0
    for s, (t, phase) in enumerate(zip(starts, phases)):
        history: Tuple[Segment, ...] = system
        for k, (user, answer) in enumerate(session_turns(ctx, s, rng, convs, token_ids)):
            prompt = history + (user,)
            n_in = sum(seg.n_tokens for seg in prompt)
            if n_in + answer > ctx.context_tokens:
                cut += 1
                break
            think = 0.0 if k == 0 else (float(rng.exponential(opts.think_time_s)) if opts.think is ThinkTime.exponential
                                        else float(opts.think_time_s))
            specs.append(RequestSpec(len(specs), phase, float(t) if k == 0 else float("nan"), n_in, answer,
                                     segments=prompt, session=s, turn=k, think_s=think))
            history = prompt + (Segment((SEGMENT_ANSWER, s, k), answer, role="assistant"),)
    plan = WorkloadPlan(
        arrival=Arrival(wl.arrival), batch_size=ctx.batch_size, requests=specs, rate_rps=float(wl.rate_rps),
        concurrency=ctx.batch_size, duration_s=float(wl.duration_s), measured_start_s=float(start),
        ignore_eos=bool(wl.ignore_eos), seed=ctx.seed, prompt_key=ctx.seed, drain_timeout_s=ctx.drain_timeout_s,
        workload=wl, token_ids=token_ids, offered_rate_rps=float("nan"),
    )
    plan.notes.update(sessions=len(starts), sessions_measured=sum(p == "measured" for p in phases),
                      sessions_cut_by_context=cut)
    return plan
