"""Start, supervise and stop a local vLLM OpenAI-compatible server.

The server binds 127.0.0.1 only (its LoRA load/unload endpoints are admin endpoints: only the app may
reach them). On CPU it runs with ``--dtype float32 --enforce-eager`` and a small KV cache. A
supervisor thread restarts a crashed server on the same port with exponential back-off and calls
``on_ready`` after each (re)start so that runtime-loaded adapters can be loaded again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .base import BackendUnavailable, GenerationError

log = logging.getLogger(__name__)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
OMP_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class ServerConfig:
    model: str
    served_model_name: str = "base"
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port once; restarts keep it
    enable_lora: bool = True
    max_loras: int = 4
    max_lora_rank: int = 16
    max_model_len: int = 512
    max_num_seqs: int = 64
    dtype: str = "float32"
    kv_cache_space_gb: int = 1
    # vLLM-CPU pins its OpenMP threads to fixed cores by default ("auto"). Servers started here
    # share the host with the app, and blue/green runs two at once: pinned, the second one's
    # engine starved for minutes on 2 cores while the first served; unpinned it starts in
    # about a minute. An explicit VLLM_CPU_OMP_THREADS_BIND (e.g. "0-7") still wins.
    omp_threads_bind: str = field(default_factory=lambda: os.environ.get(OMP_BIND_ENV, "nobind"))
    log_path: str = ""
    startup_timeout_s: float = 300.0
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.host not in LOCAL_HOSTS:
            raise GenerationError(
                f"vLLM must bind a loopback address (127.0.0.1), not {self.host!r}: its admin "
                "endpoints (load/unload adapters) must never be reachable by users"
            )
        if not 1 <= self.max_lora_rank <= 256:
            raise GenerationError("max_lora_rank must be in 1..256")


def server_command(cfg: ServerConfig, port: int) -> list[str]:
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", cfg.model,
        "--served-model-name", cfg.served_model_name,
        "--dtype", cfg.dtype,
        "--enforce-eager",
        "--max-model-len", str(cfg.max_model_len),
        "--max-num-seqs", str(cfg.max_num_seqs),
        "--host", cfg.host,
        "--port", str(port),
    ]  # fmt: skip
    if cfg.enable_lora:
        cmd += ["--enable-lora", "--max-lora-rank", str(cfg.max_lora_rank), "--max-loras", str(cfg.max_loras)]
    return cmd + list(cfg.extra_args)


def server_env(cfg: ServerConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        VLLM_ALLOW_RUNTIME_LORA_UPDATING="True" if cfg.enable_lora else "False",
        VLLM_CPU_KVCACHE_SPACE=str(cfg.kv_cache_space_gb),
        VLLM_CPU_OMP_THREADS_BIND=cfg.omp_threads_bind,
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def _is_vllm_server(pid: int, port: int) -> bool:
    """Whether ``pid`` is still a vLLM server on ``port`` (guards against a recycled pid)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"vllm.entrypoints.openai.api_server" in args and str(port).encode() in args


def stop_server_process(url: str, pid: int, *, kill_timeout: float = 20.0) -> bool:
    """Stop a server that ``VLLMServer`` started, possibly in another process of this host.

    ``VLLMServer`` starts each server in its own process group, so a record ``{"url", "pid"}``
    (``VLLMServer.record()``) is enough to end the server and its engine processes from anywhere.
    Returns False when no such server runs any more.
    """
    port = int(url.rsplit(":", 1)[-1].split("/", 1)[0])
    if not _is_vllm_server(pid, port):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + kill_timeout
    while time.monotonic() < deadline:
        if not _is_vllm_server(pid, port):
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def running_requests(url: str) -> int | None:
    """Requests running or waiting on the server at ``url``, from its Prometheus metrics (None: unknown)."""
    try:
        text = httpx.get(url.rstrip("/") + "/metrics", timeout=2.0).text
    except httpx.HTTPError:
        return None
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting")):
            total += float(line.rsplit(" ", 1)[-1])
            seen = True
    return int(total) if seen else None


def drain(url: str, timeout: float = 60.0) -> bool:
    """Wait until no request runs on the server at ``url`` (new ones must already go elsewhere)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = running_requests(url)
        if n is None or n == 0:
            return True
        time.sleep(0.2)
    return False


class VLLMServer:
    """One managed vLLM process. Use ``start()`` then ``wait_healthy()``, or ``with`` for both."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        on_ready: Callable[[VLLMServer], None] | None = None,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.config = config
        self.port = config.port or free_port(config.host)
        self.on_ready = on_ready
        self.max_backoff_s = max_backoff_s
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(self.config.log_path or f"/tmp/vllm-{self.port}.log")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def is_healthy(self, timeout: float = 2.0) -> bool:
        try:
            return httpx.get(self.url + "/health", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> VLLMServer:
        if self.is_running():
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log_file:
            self._log_file.close()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process lifetime
        cmd = server_command(self.config, self.port)
        self._log_file.write(f"\n=== {time.strftime('%F %T')} starting: {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        self._proc = subprocess.Popen(
            cmd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=server_env(self.config),
            start_new_session=True,  # its own process group: stop() ends the engine workers too
        )
        log.info("vLLM starting (pid %s) on %s, log %s", self._proc.pid, self.url, self.log_path)
        return self

    def wait_healthy(self, timeout: float | None = None) -> VLLMServer:
        deadline = time.monotonic() + (timeout or self.config.startup_timeout_s)
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BackendUnavailable(
                    f"vLLM exited with code {self._proc.returncode} during start-up; "
                    f"last log lines:\n{self.tail_log()}"
                )
            if self.is_healthy():
                if self.on_ready:
                    self.on_ready(self)
                return self
            time.sleep(0.5)
        raise BackendUnavailable(f"vLLM on {self.url} not healthy after {timeout}s; log:\n{self.tail_log()}")

    def tail_log(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def supervise(self, poll_s: float = 1.0) -> None:
        """Restart the server after a crash (exponential back-off, reset after 60 s of health)."""
        if self._supervisor and self._supervisor.is_alive():
            return

        def loop() -> None:
            backoff, healthy_since = 1.0, time.monotonic()
            while not self._stopping.wait(poll_s):
                if self.is_running():
                    if time.monotonic() - healthy_since > 60:
                        backoff = 1.0
                    continue
                code = self._proc.returncode if self._proc else None
                log.error("vLLM on %s exited (code %s); restarting in %.0fs", self.url, code, backoff)
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)
                self.restarts += 1
                try:
                    self.start().wait_healthy()
                    healthy_since = time.monotonic()
                except BackendUnavailable as e:
                    log.error("vLLM restart failed: %s", e)

        self._supervisor = threading.Thread(target=loop, name=f"vllm-supervisor-{self.port}", daemon=True)
        self._supervisor.start()

    def running_requests(self) -> int | None:
        """Requests running or waiting, from the Prometheus metrics (None when unknown)."""
        return running_requests(self.url)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until no request is running (new ones must already go elsewhere)."""
        return drain(self.url, timeout)

    def stop(self, *, drain_timeout: float = 0.0, kill_timeout: float = 20.0) -> None:
        self._stopping.set()
        if drain_timeout > 0 and self.is_running():
            self.drain(drain_timeout)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(kill_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except ProcessLookupError:
                pass
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def record(self) -> dict[str, object]:
        """What another process needs to route to this server and to stop it: ``{"url", "pid"}``."""
        return {"url": self.url, "pid": self.pid}

    def __enter__(self) -> VLLMServer:
        return self.start().wait_healthy()

    def __exit__(self, *exc: object) -> None:
        self.stop()
