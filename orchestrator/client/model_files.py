"""Model directories without a hub: ``config.json`` + a generated tokenizer (docs/architecture.md,
"Models without a hub").

``model_dir(model, quantization)`` returns ``model.path`` when the config names one, else writes
(once, atomically) a directory under ``~/.cache/orchestrator/models/`` holding:

- ``config.json`` in Hugging Face format, built from the architecture numbers of the model
  config, with a ``quantization_config`` block for checkpoint formats that need one (AWQ, GPTQ);
- a word-level tokenizer (``tokenizer.json`` + ``tokenizer_config.json``) whose vocabulary has
  exactly ``vocab_size`` entries (``<unk>``, ``<s>``, ``</s>``, then ``t3``, ``t4``, ...), so
  that any token id is valid and prompts can be sent as token ids with exact lengths, and a
  chat template that adds nothing (``PLAIN_CHAT_TEMPLATE``: chat prompts keep their length).

Weights are not written by ``model_dir``: vLLM runs with ``load_format="dummy"`` and the HF
engine creates random weights of the right shapes (``from_config``), except for small shapes,
which it saves once with ``save_random_weights`` (the ``tiny`` model). Speed, memory and energy
with fixed output lengths are those of the real model.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional

if TYPE_CHECKING:
    from orchestrator.config.groups import ModelConfig, QuantizationConfig

CACHE_ENV = "ORCHESTRATOR_MODEL_CACHE"
SPECIAL = ("<unk>", "<s>", "</s>")

_QUANT_BLOCKS = {
    "awq": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
    "gptq": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True,
             "damp_percent": 0.01, "true_sequential": True},
}


def hf_config(model: "ModelConfig", quantization: Optional["QuantizationConfig"] = None,
              dtype: str = "float16") -> Dict:
    """The ``config.json`` dict of a Llama/Mistral-family model."""
    cfg = {
        "architectures": [model.hf_architecture],
        "model_type": model.model_type,
        "hidden_size": model.hidden_size,
        "intermediate_size": model.intermediate_size,
        "num_hidden_layers": model.n_layers,
        "num_attention_heads": model.n_heads,
        "num_key_value_heads": model.n_kv_heads,
        "head_dim": model.hidden_size // model.n_heads,
        "vocab_size": model.vocab_size,
        "max_position_embeddings": model.max_context_tokens,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "initializer_range": 0.02,
        "tie_word_embeddings": bool(model.tie_word_embeddings),
        "torch_dtype": dtype,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "use_cache": True,
    }
    if model.model_type == "mistral":
        cfg["sliding_window"] = None
    q = quantization.name if quantization is not None else None
    if q in _QUANT_BLOCKS:
        cfg["quantization_config"] = dict(_QUANT_BLOCKS[q])
    return cfg


PLAIN_CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
"""The generated tokenizer's chat template: the messages' text as is, nothing added (a chat
request's prompt has the tokens of its text; vLLM needs a template to serve chat at all)."""


def tokenizer_files(vocab_size: int) -> Dict[str, Dict]:
    """A word-level tokenizer with exactly ``vocab_size`` tokens, as JSON documents."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    vocab.update({f"t{i}": i for i in range(len(SPECIAL), vocab_size)})
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, t in enumerate(SPECIAL)
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": False},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<unk>",
        "model_max_length": 1_000_000,
        "padding_side": "left",
        "clean_up_tokenization_spaces": False,
        "chat_template": PLAIN_CHAT_TEMPLATE,
    }
    special = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>"}
    return {"tokenizer.json": tokenizer, "tokenizer_config.json": config, "special_tokens_map.json": special}


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "orchestrator" / "models"))


def model_dir(model: "ModelConfig", quantization: Optional["QuantizationConfig"] = None, dtype: str = "float16",
              root: Optional[Path] = None) -> Path:
    """A directory vLLM and transformers can load (see module doc); created once."""
    if model.path:
        path = Path(os.path.expanduser(model.path))
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model.path={path}: no config.json there")
        return path
    files = {"config.json": hf_config(model, quantization, dtype), **tokenizer_files(model.vocab_size)}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
    q = quantization.name if quantization is not None else "none"
    target = (root or cache_root()) / f"{model.name}-{q}-{dtype}-{digest}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        for name, doc in files.items():
            (tmp / name).write_text(json.dumps(doc, indent=1))
        try:
            os.replace(tmp, target)
        except OSError:  # another worker made it first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def checkpoint_quant_method(model: "ModelConfig", quantization: Optional["QuantizationConfig"] = None) -> Optional[str]:
    """``quant_method`` of the ``quantization_config`` block in the ``config.json`` that
    ``model_dir`` gives (``model.path``'s own, or the generated one); None without a block (or a
    ``model.path`` without ``config.json``). Reads at most one small file; writes nothing."""
    if model.path:
        path = Path(os.path.expanduser(model.path)) / "config.json"
        cfg = json.loads(path.read_text()) if path.is_file() else {}
    else:
        cfg = hf_config(model, quantization)
    block = cfg.get("quantization_config")
    return block.get("quant_method") if isinstance(block, dict) else None


def prompt_digest(ids) -> str:
    """16 hex digits identifying a prompt (BLAKE2b of its token ids as int64): equal prompts,
    equal digests; stored per request so a store shows that no two cells sent the same prompt."""
    import numpy as np

    return hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=8).hexdigest()


def prompt_token_ids(n_tokens: int, seed: int, vocab_size: int):
    """Deterministic prompt of exactly ``n_tokens`` ordinary token ids (no special tokens)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.integers(len(SPECIAL), vocab_size, size=n_tokens).tolist()


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def has_weights(path: Path) -> bool:
    """True when ``path`` holds a transformers checkpoint (safetensors or bin, single or sharded)."""
    return any((Path(path) / name).is_file() for name in WEIGHT_FILES)


def save_random_weights(path: Path, seed: int = 0) -> Path:
    """Write random fp32 weights of the shapes in ``path/config.json`` into ``path`` with
    ``save_pretrained``; returns ``path``. Idempotent and safe against concurrent writers.

    The model is built on the CPU (seeded, so every worker writes the same weights), saved into
    a temporary sibling directory, and only its weight files are moved in (``os.replace``; an
    index file last), so a reader never sees a partial checkpoint and ``config.json`` and the
    tokenizer stay as ``model_dir`` wrote them. Meant for small shapes (the ``tiny`` model):
    memory is 4 bytes per parameter. Imports torch and transformers here, never at module level.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    if has_weights(path):
        return path
    config = AutoConfig.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, **dtype_kwarg(torch.float32))
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-weights-", dir=path.parent))
    try:
        model.save_pretrained(tmp)
        shards = [p.name for p in tmp.iterdir() if p.suffix in (".safetensors", ".bin")]
        indexes = [p.name for p in tmp.iterdir() if p.name.endswith(".index.json")]
        for name in shards + indexes:  # the index names the shards: it comes last
            os.replace(tmp / name, path / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def dtype_kwarg(torch_dtype) -> Dict:
    """The keyword that sets a model's dtype in ``from_config`` / ``from_pretrained``:
    ``dtype`` from transformers 4.56 on (``torch_dtype`` is deprecated there), else
    ``torch_dtype``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": torch_dtype} if (major, minor) >= (4, 56) else {"torch_dtype": torch_dtype}
