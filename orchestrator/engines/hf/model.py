"""Loading a transformers model for the hf engine: tokenizer, checkpoint or random weights of the
right shapes created on the target device, bitsandbytes INT8 in place, host-memory check.
``torch``, ``transformers`` and ``bitsandbytes`` are imported inside the functions."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from orchestrator.client import model_files as models
from orchestrator.config.groups import ModelConfig
from orchestrator.errors import CellFailure, Status
from orchestrator.perf.roofline import total_params

HOST_MEMORY_FRACTION = 0.8
"""A CPU model whose weights need more than this fraction of host RAM ends ``oom`` at start."""
INT8_SKIP_MODULES = ("lm_head",)


def check_host_memory(model: ModelConfig, bytes_per_param: int, host_bytes: Optional[int] = None) -> None:
    """``CellFailure('oom')`` when a CPU model's weights would not fit in host RAM."""
    need = total_params(model) * bytes_per_param
    host = host_bytes if host_bytes is not None else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > HOST_MEMORY_FRACTION * host:
        raise CellFailure(Status.oom, f"{model.name} needs {need / 2**30:.1f} GiB of weights on the CPU; "
                                 f"host has {host / 2**30:.1f} GiB")


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def load_tokenizer(path: Path):
    """The directory's tokenizer, left-padding, with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def random_model(path: Path, device: str, dtype: str):
    """Random weights of ``path/config.json``'s shapes, created on ``device`` in ``dtype``
    (seed 0: the same weights on every start)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, **models.dtype_kwarg(torch_dtype(dtype)))


def bnb_config(threshold: float):
    """The seed's ``BitsAndBytesConfig``: 8-bit weights, ``llm_int8_threshold=threshold``."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=float(threshold),
                              llm_int8_skip_modules=list(INT8_SKIP_MODULES))


def quantize_int8_(model, quant_config) -> int:
    """Replace ``model``'s ``nn.Linear`` layers (but the skipped ones) in place by bitsandbytes
    ``Linear8bitLt`` as ``from_pretrained(quantization_config=BitsAndBytesConfig(...))`` does:
    ``has_fp16_weights=False``, the config's threshold; the fp16 weight goes through the CPU one
    layer at a time and is quantized when moved back to the GPU. -> layers replaced."""
    import bitsandbytes as bnb
    import torch

    device = next(model.parameters()).device
    skip = set(quant_config.llm_int8_skip_modules or INT8_SKIP_MODULES)
    targets = [(n, m) for n, m in model.named_modules()
               if type(m) is torch.nn.Linear and n.rsplit(".", 1)[-1] not in skip]
    for name, lin in targets:
        new = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                  has_fp16_weights=False, threshold=quant_config.llm_int8_threshold, device="meta")
        new.weight = bnb.nn.Int8Params(lin.weight.data.to("cpu"), requires_grad=False, has_fp16_weights=False)
        if lin.bias is not None:
            new.bias = torch.nn.Parameter(lin.bias.data, requires_grad=False)
        model.set_submodule(name, new.to(device))
    return len(targets)
