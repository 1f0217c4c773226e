"""``engine=endpoint``'s config, checked before anything is sent: its options' values, what is
part of a cell's identity (the key's variable name is not), no VRAM check (the server holds the
model), the batch-size sweep refused before any probe, and URLs through the grid's overrides."""
from __future__ import annotations

import pytest

from orchestrator.driver.grid import cells, config_of
from orchestrator.engines import cell_engine
from orchestrator.engines.endpoint import EndpointEngine, api_key
from orchestrator.errors import ConfigError

URL = "http://127.0.0.1:9"  # nothing listens there: nothing below may send a request


def cfg(*overrides):
    return config_of(["engine=endpoint", "model=llama2_7b", f"engine.endpoint.base_url={URL}", *overrides])


@pytest.mark.parametrize("override, message", [
    ("engine.endpoint.base_url=127.0.0.1:8000", "must start with http:// or https://"),
    ("engine.endpoint.api_key_env=sk-abc123", "must be the NAME of an environment variable"),
    ("engine.endpoint.gpu_uuids=[0]", "NVML UUIDs"),
])
def test_bad_options_are_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        cfg(override)


def test_the_url_survives_the_override_grammar_and_the_key_name_is_no_identity():
    c = cfg("engine.endpoint.api_key_env=A_KEY", "engine.endpoint.gpu_uuids=[GPU-1,GPU-2]")
    assert c.engine.endpoint.base_url == URL and c.engine.endpoint.gpu_uuids == ["GPU-1", "GPU-2"]
    [a] = cells([c], {})
    [b] = cells([cfg("engine.endpoint.api_key_env=OTHER", "engine.endpoint.gpu_uuids=[GPU-1,GPU-2]")], {})
    [other_server] = cells([cfg("engine.endpoint.base_url=http://10.0.0.1:8000",
                                "engine.endpoint.gpu_uuids=[GPU-1,GPU-2]")], {})
    assert a.cell_id == b.cell_id != other_server.cell_id


def test_no_vram_check_the_server_holds_the_model():
    [c] = cells([cfg("batch_size=4096", "gpu=t4")], {})
    assert c.status is None and cell_engine(c) is EndpointEngine


def test_a_batch_size_sweep_is_refused_before_any_probe():
    with pytest.raises(ConfigError) as exc:
        EndpointEngine.check_before_launch([cfg("batch_size=1"), cfg("batch_size=8")])
    assert str(exc.value).startswith("batch_size=1,8: engine=endpoint measures a server that schedules its own")


def test_the_key_variable_must_be_set(monkeypatch):
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    with pytest.raises(ConfigError, match="NOT_SET_KEY: that environment variable is not set"):
        api_key(cfg("engine.endpoint.api_key_env=NOT_SET_KEY").engine.endpoint)
    monkeypatch.setenv("NOT_SET_KEY", "sk-x")
    assert api_key(cfg("engine.endpoint.api_key_env=NOT_SET_KEY").engine.endpoint) == "sk-x"


def test_base_url_is_required_with_engine_endpoint():
    from orchestrator.engines.endpoint import probe_target

    with pytest.raises(ConfigError, match="engine.endpoint.base_url: required"):
        probe_target(cfg("engine.endpoint.base_url="))
