"""``workload.source=dataset``: prompts from a local ShareGPT JSON or JSONL file, re-tokenized
with the cell's model tokenizer (``SourceContext.encode_messages``: one user message as its text,
a history rendered with the chat template). Rows are used in a seeded shuffle (``shuffle``) or
file order, from ``offset`` on, cycling; a row longer than ``max_prompt_tokens`` (0: the context
less its output) is skipped and counted (``notes``: ``dataset_rows_skipped``). Output lengths:
the row's ``output_tokens``, else its reference answer's token count, else drawn from
``workload.output`` (always drawn with ``output=distribution``); clipped to the context.
Arrivals are the workload's (open loop, closed loop, static batches), as for synthetic traffic.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from orchestrator.client.trace_files import TraceFileError
from orchestrator.client.workload import (
    SEGMENT_DATA, PromptContent, Segment, WorkloadPlan, build_plan, draw_lengths,
)
from orchestrator.config.groups import WorkloadConfig
from orchestrator.config.workload_sources import OutputLengths, Source
from orchestrator.workloads import register_source
from orchestrator.workloads.context import SourceContext, load_dataset


class DatasetContent(PromptContent):
    """The tokenized rows of a dataset, taken in the order the source says (see module doc)."""

    def __init__(self, token_ids: Dict[int, Tuple[int, ...]], outputs: Dict[int, Optional[int]],
                 order: Sequence[int], offset: int, from_data: bool, context_tokens: int, skipped: int = 0):
        self.token_ids = token_ids
        self.outputs = outputs
        self.order = list(order)
        self.offset = int(offset)
        self.from_data = from_data
        self.context_tokens = int(context_tokens)
        self.skipped = int(skipped)  # rows left out: longer than the prompt limit

    def take(self, indices: Sequence[int], workload: WorkloadConfig,
             rng: np.random.Generator) -> List[Tuple[int, int, Tuple[Segment, ...]]]:
        drawn = draw_lengths(workload.output, len(indices), rng)
        out = []
        for i, n_drawn in zip(indices, drawn):
            row = self.order[(self.offset + int(i)) % len(self.order)]
            n_in = len(self.token_ids[row])
            given = self.outputs[row] if self.from_data else None
            n_out = int(given if given else n_drawn)
            n_out = max(1, min(n_out, self.context_tokens - n_in))
            segments: Tuple[Segment, ...] = (Segment((SEGMENT_DATA, row), n_in),)
            out.append((n_in, n_out, segments))
        return out


def dataset_content(ctx: SourceContext) -> DatasetContent:
    """Tokenize the dataset's rows for the cell (see module doc)."""
    opts = ctx.workload.dataset
    rows = load_dataset(opts.path, opts.format, opts.sha256)
    from_data = opts.output is OutputLengths.data
    token_ids: Dict[int, Tuple[int, ...]] = {}
    outputs: Dict[int, Optional[int]] = {}
    skipped = 0
    for r, row in enumerate(rows):
        ids = tuple(ctx.encode_messages(row.messages))
        out = row.output_tokens
        if out is None and row.reference is not None:
            out = len(ctx.prompts.encode(row.reference))
        # the output this row will ask for: its own (output=data), else the distribution's mean
        planned = out if from_data and out else ctx.workload.output.mean_tokens
        limit = opts.max_prompt_tokens or ctx.context_tokens - max(1, planned)
        if not ids or len(ids) > limit:
            skipped += 1
            continue
        token_ids[r], outputs[r] = ids, out
    if not token_ids:
        raise TraceFileError(f"{opts.path}: no prompt fits (every one of {len(rows)} is longer than "
                             f"{opts.max_prompt_tokens or 'the context less its output'} tokens)")
    order = sorted(token_ids)
    if opts.shuffle:
        order = [order[i] for i in np.random.default_rng(ctx.seed).permutation(len(order))]
    return DatasetContent(token_ids, outputs, order, opts.offset, from_data, ctx.context_tokens, skipped)


@register_source(Source.dataset)
def dataset_plan(ctx: SourceContext) -> WorkloadPlan:
    content = dataset_content(ctx)
    plan = build_plan(ctx.workload, ctx.batch_size, ctx.repeat, prompt_key=ctx.seed, drain_timeout_s=ctx.drain_timeout_s,
                      content=content)
    plan.notes.update(dataset_rows=len(content.order), dataset_rows_skipped=content.skipped)
    return plan
