"""The command line and environment of the vLLM servers the app starts (no server is started)."""

from __future__ import annotations

import pytest

from trainer.generation.base import GenerationError
from trainer.generation.vllm_server import OMP_BIND_ENV, ServerConfig, server_command, server_env


def test_command_binds_loopback_with_runtime_lora(tmp_path):
    cfg = ServerConfig(model=str(tmp_path), max_loras=3, max_lora_rank=8)
    cmd = server_command(cfg, port=8123)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "8123"
    assert cmd[cmd.index("--max-loras") + 1] == "3" and cmd[cmd.index("--max-lora-rank") + 1] == "8"
    assert server_env(cfg)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_openmp_threads_are_not_pinned_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(OMP_BIND_ENV, raising=False)
    assert server_env(ServerConfig(model=str(tmp_path)))[OMP_BIND_ENV] == "nobind"
    monkeypatch.setenv(OMP_BIND_ENV, "0-3")
    assert server_env(ServerConfig(model=str(tmp_path)))[OMP_BIND_ENV] == "0-3"
    assert server_env(ServerConfig(model=str(tmp_path), omp_threads_bind="auto"))[OMP_BIND_ENV] == "auto"


def test_refuses_a_public_address(tmp_path):
    with pytest.raises(GenerationError, match="loopback"):
        ServerConfig(model=str(tmp_path), host="0.0.0.0")
