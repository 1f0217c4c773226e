"""Random weights for small generated models (``models.save_random_weights``): written once with
``save_pretrained`` next to the generated config and tokenizer, deterministic, loadable."""
from __future__ import annotations

import hashlib
import json

from orchestrator.client import model_files as models
from orchestrator.driver.grid import group_option

NONE = group_option("quantization", "none")


def _tiny():
    return group_option("model", "tiny")


def _digest(path):
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_tiny_weights_are_saved_once_deterministic_and_leave_config_alone(tmp_path):
    a = models.model_dir(_tiny(), NONE, root=tmp_path / "a")
    config_before = (a / "config.json").read_text()
    assert not models.has_weights(a)
    models.save_random_weights(a)
    assert models.has_weights(a) and (a / "config.json").read_text() == config_before
    assert not [p for p in a.parent.iterdir() if p.name.startswith(".tmp")]  # no temp dirs left
    first = _digest(a)
    models.save_random_weights(a)  # idempotent: kept as is
    assert _digest(a) == first
    b = models.save_random_weights(models.model_dir(_tiny(), NONE, root=tmp_path / "b"))
    assert _digest(b) == first  # every worker writes the same weights


def test_saved_tiny_model_loads_with_the_right_shapes_and_tokenizer(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = models.save_random_weights(models.model_dir(_tiny(), NONE, root=tmp_path))
    model = AutoModelForCausalLM.from_pretrained(path, **models.dtype_kwarg(torch.float32))
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    cfg = json.loads((path / "config.json").read_text())
    assert model.config.num_hidden_layers == cfg["num_hidden_layers"] == 2
    assert model.get_input_embeddings().weight.shape == (512, 64) and len(tok) == 512
    assert next(model.parameters()).dtype == torch.float32
    assert float(model.get_input_embeddings().weight.detach().std()) > 0  # random, not zeros


def test_dtype_kwarg_names_the_keyword_this_transformers_takes():
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    assert models.dtype_kwarg("float16") == {key: "float16"}
