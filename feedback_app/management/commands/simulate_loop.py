"""Drive the real loop with simulated labelers that follow a hidden preference rule.

Starts what is not already running (the tiny base model, a vLLM server, gunicorn,
a Celery worker), then runs the rounds and prints one JSON line per round.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from feedback_app.services import simulation
from trainer.generation.vllm_server import free_port


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).ok:
                return
        time.sleep(0.5)
    raise CommandError(f"{url} did not come up within {timeout:.0f} s")


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--labelers", type=int, default=3)
        parser.add_argument("--items-per-round", type=int, default=96)
        parser.add_argument("--rule", default="short", help="short, short:N, keyword:WORD or exclaim")
        parser.add_argument(
            "--noise", type=float, default=0.1, help="Share of judgements that break the rule."
        )
        parser.add_argument(
            "--backend", choices=["vllm", "hf"], default=None, help="Default: GENERATION_BACKEND."
        )
        parser.add_argument("--url", default="", help="A running web server; default: start gunicorn.")
        parser.add_argument("--no-worker", action="store_true", help="Use Celery workers already running.")
        parser.add_argument("--algorithm", choices=["dpo", "rloo"], default="dpo")
        parser.add_argument("--epochs", type=float, default=3.0)
        parser.add_argument("--beta", type=float, default=0.1)
        parser.add_argument("--learning-rate", type=float, default=2e-3)
        parser.add_argument(
            "--max-kl", type=float, default=30.0, help="Gate: KL limit to the serving version."
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--fresh", action="store_true", help="Start from the base model with a new project."
        )

    def handle(self, *args, **opts):
        self.children: list[subprocess.Popen] = []
        env = {**os.environ, "FEEDBACK_VOTE_RATE": "1000", "LOG_LEVEL": "WARNING"}
        try:
            env.update(self._ensure_model())
            if opts["backend"]:
                env["GENERATION_BACKEND"] = opts["backend"]
            settings.GENERATION = {
                **getattr(settings, "GENERATION", {}),
                "BACKEND": env.get("GENERATION_BACKEND", "vllm"),
            }
            if settings.GENERATION["BACKEND"] == "vllm":
                env.update(self._ensure_vllm(env))
            base_url = opts["url"] or self._start_web(env)
            if not opts["no_worker"]:
                self._start_worker(env)
            from feedback_app.tasks import start_pipeline

            if opts["fresh"]:
                simulation.reset()

            config = simulation.SimulationConfig(
                rounds=opts["rounds"],
                labelers=opts["labelers"],
                items_per_round=opts["items_per_round"],
                judgements_per_item=1,
                noise=opts["noise"],
                rule=opts["rule"],
                seed=opts["seed"],
                training_options={
                    "algorithm": opts["algorithm"],
                    "epochs": opts["epochs"],
                    "reward_epochs": 4.0,
                    "beta": opts["beta"],
                    "learning_rate": opts["learning_rate"],
                    "min_win_rate": 0.0,
                    "min_pair_accuracy": 0.5,
                    "max_kl": opts["max_kl"],
                    "seed": opts["seed"],
                },
            )
            simulation.simulate(
                config,
                base_url=base_url,
                start_pipeline=start_pipeline,
                emit=lambda summary: self.stdout.write(simulation.as_json_line(summary)),
            )
        finally:
            for child in reversed(self.children):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
            for child in self.children:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=30)

    def _ensure_model(self) -> dict[str, str]:
        from feedback_app.services.generation import generation_config

        model_dir = generation_config()["MODEL_DIR"] or settings.LOOP["BASE_MODEL"]
        if not (Path(model_dir) / "config.json").is_file():
            self.stderr.write(f"bootstrapping the tiny policy into {model_dir} …")
            from trainer.bootstrap import BootstrapConfig, bootstrap_policy

            made = bootstrap_policy(BootstrapConfig(), Path(model_dir).parent)
            model_dir = str(made)
        settings.GENERATION = {**getattr(settings, "GENERATION", {}), "MODEL_DIR": model_dir}
        settings.LOOP = {**settings.LOOP, "BASE_MODEL": model_dir}
        return {"VLLM_MODEL_DIR": model_dir, "LOOP_BASE_MODEL": model_dir}

    def _ensure_vllm(self, env: dict[str, str]) -> dict[str, str]:
        from feedback_app.services.generation import backend_status

        if backend_status(refresh=True)["ok"]:
            return {}
        from trainer.generation.vllm_server import ServerConfig, VLLMServer

        self.stderr.write("starting vLLM (about a minute) …")
        server = VLLMServer(
            ServerConfig(
                model=env["VLLM_MODEL_DIR"],
                max_loras=settings.GENERATION["MAX_LORAS"],
                log_path=str(Path(settings.VAR_DIR) / "log" / "vllm-simulation.log"),
            )
        ).start()
        server.wait_healthy()
        self._vllm = server
        self.children.append(server._proc)
        settings.GENERATION = {**settings.GENERATION, "VLLM_URLS": [server.url]}
        return {"VLLM_URLS": server.url}

    def _start_web(self, env: dict[str, str]) -> str:
        port = free_port()
        command = [sys.executable, "-m", "gunicorn", "feedback_app.wsgi", "--bind", f"127.0.0.1:{port}",
                   "--workers", "2", "--log-level", "warning"]  # fmt: skip
        self.children.append(
            subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, start_new_session=True)
        )
        url = f"http://127.0.0.1:{port}"
        _wait_http(url + "/healthz", 60)
        return url

    def _start_worker(self, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "celery", "-A", "feedback_app", "worker", "-Q", "web,training",
                   "-c", "1", "--loglevel", "WARNING", "-n", f"simulate-{os.getpid()}@%h"]  # fmt: skip
        self.children.append(
            subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, start_new_session=True)
        )
        from feedback_app.celery import app

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if app.control.ping(timeout=1.0):
                return
        raise CommandError("the Celery worker did not start")
