"""Hot swap under load: time from promote to the first response from the new version, and failures.

A real vLLM server (CPU) serves the tiny model; the registry (PostgreSQL, Redis) promotes v1, then
C concurrent clients loop on streamed temperature-0 chat requests (like chat users), each using the
serving alias resolved when the request starts. While they run, v2 is promoted, then rolled back. A
request fails when it errors or any chunk's ``model`` field is not the alias it started with.

swap_s / rollback_s: from the start of ``promote_version`` / ``rollback`` to the first response
(first streamed chunk) from the new version. ``*_complete_s`` is the time to the first complete
answer from it, which adds one request's generation time under the load (printed for reference).

Last line: swap_s=... rollback_s=... failed=...
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("BENCH_DB", "feedback_bench_swap")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def setup_django(url: str, model_dir: str) -> None:
    os.environ["POSTGRES_DB"] = BENCH_DB
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedback_app.settings")
    os.environ.update(
        GENERATION_BACKEND="vllm",
        VLLM_URLS=url,
        VLLM_MODEL_DIR=model_dir,
        CACHE_KEY_PREFIX=f"bench-swap-{os.getpid()}",
    )
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", BENCH_DB], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", BENCH_DB], check=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class Load:
    """C client threads; records (t_start, t_first_chunk, t_end, alias at start, model(s), error)."""

    def __init__(self, clients: int, tokens: int) -> None:
        self.clients, self.tokens = clients, tokens
        self.records: list[tuple[float, float, float, str, str, str]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(k,)) for k in range(clients)]

    def run(self, k: int) -> None:
        from django.db import connection

        from feedback_app.services.generation import get_backend
        from feedback_app.services.registry import serving_alias
        from trainer.generation.base import GenerationRequest, SamplingParams

        replicas, i = get_backend().replicas, k
        params = SamplingParams(temperature=0.0, max_tokens=self.tokens)
        while not self.stop.is_set():
            t0, alias = time.monotonic(), serving_alias()
            messages = [{"role": "user", "content": f"Client {k} question {i}?"}]
            t_first, models, error = float("nan"), set(), ""
            try:
                request = GenerationRequest(alias, messages, params=params)
                for model, _piece in replicas[i % len(replicas)].stream_with_model(request):
                    if not models:
                        t_first = time.monotonic()
                    models.add(model)
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
            with self.lock:
                self.records.append((t0, t_first, time.monotonic(), alias, ",".join(sorted(models)), error))
            i += 1
        connection.close()

    def first(self, model: str, after: float, complete: bool) -> float:
        with self.lock:
            times = [r[2] if complete else r[1] for r in self.records if r[4] == model]
        times = [t for t in times if t >= after]
        return min(times) - after if times else float("nan")

    def wait_for(self, model: str, after: float, timeout: float = 30) -> tuple[float, float]:
        """(first chunk, first complete answer) from ``model``, in seconds after ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.first(model, after, complete=True)
            if done == done:  # not NaN: every chunk before it is recorded too
                return self.first(model, after, complete=False), done
            time.sleep(0.01)
        return float("nan"), float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--settle", type=float, default=3.0, help="Seconds of load before/after each switch.")
    ap.add_argument("--work-dir", default=str(ROOT / "var" / "bench" / "generation"))
    args = ap.parse_args()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    from trainer.generation.tiny import build_tiny_policy, make_random_lora
    from trainer.generation.vllm_server import ServerConfig, VLLMServer

    work = Path(args.work_dir)
    model_dir = str(build_tiny_policy(work / "model"))
    adapters = [str(make_random_lora(model_dir, work / f"adapter-{i}", seed=i)) for i in (1, 2)]
    server = VLLMServer(ServerConfig(model=model_dir, max_loras=4, log_path=str(work / "vllm-swap.log")))
    t0 = time.perf_counter()
    server.start()
    try:
        server.wait_healthy()
        print(f"vllm started in {time.perf_counter() - t0:.1f}s at {server.url}")
        setup_django(server.url, model_dir)
        from feedback_app.services import registry

        base = registry.register_version("base", base_model=model_dir)
        registry._switch(base, user=None, reason="bench")
        v1 = registry.register_version("v1", adapter_path=adapters[0])
        v2 = registry.register_version("v2", adapter_path=adapters[1])
        registry.promote_version(v1)

        load = Load(args.clients, args.tokens)
        for t in load.threads:
            t.start()
        time.sleep(args.settle)
        t_promote = time.monotonic()
        registry.promote_version(v2)
        promote_call = time.monotonic() - t_promote
        swap_s, swap_complete_s = load.wait_for(v2.lora_name, t_promote)
        time.sleep(args.settle)
        t_rollback = time.monotonic()
        registry.rollback(None)
        rollback_call = time.monotonic() - t_rollback
        rollback_s, rollback_complete_s = load.wait_for(v1.lora_name, t_rollback)
        time.sleep(args.settle)
        load.stop.set()
        for t in load.threads:
            t.join(60)
    finally:
        server.stop()

    errors = [r for r in load.records if r[5]]
    wrong = [r for r in load.records if not r[5] and r[4] != r[3]]
    latencies = sorted(r[2] - r[0] for r in load.records)
    wall = load.records[-1][2] - load.records[0][0] if load.records else 0.0
    print(
        f"requests={len(load.records)} req_per_s={len(load.records) / max(wall, 1e-9):.1f} "
        f"p50_ms={1000 * latencies[len(latencies) // 2]:.0f} errors={len(errors)} wrong_model={len(wrong)}"
    )
    print(f"promote_call_s={promote_call:.3f} rollback_call_s={rollback_call:.3f}")
    print(f"swap_complete_s={swap_complete_s:.3f} rollback_complete_s={rollback_complete_s:.3f}")
    for r in (errors + wrong)[:5]:
        print("failed:", r)
    print(f"swap_s={swap_s:.3f} rollback_s={rollback_s:.3f} failed={len(errors) + len(wrong)}")


if __name__ == "__main__":
    main()
