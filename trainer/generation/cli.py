"""``serve``, ``generate`` and ``tiny`` subcommands (``python -m trainer.generation ...``).

``add_subcommands(sub)`` and ``run_command(args)`` let ``trainer/cli.py`` offer the same commands as
``python -m trainer serve ...``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from .base import GenerationError, GenerationRequest, SamplingParams

COMMANDS = ("serve", "generate", "tiny")


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("serve", help="Start a local vLLM server (127.0.0.1) and keep it running.")
    p.add_argument("--model", required=True, help="Model directory (e.g. the bootstrap run's model/).")
    p.add_argument("--served-model-name", default="base", help="Name requests use for the base model.")
    p.add_argument("--port", type=int, default=0, help="Port on 127.0.0.1 (default: a free one).")
    p.add_argument("--max-loras", type=int, default=4, help="Adapters kept loaded (vLLM --max-loras).")
    p.add_argument("--max-lora-rank", type=int, default=16, help="vLLM --max-lora-rank.")
    p.add_argument("--max-model-len", type=int, default=512, help="Context length.")
    p.add_argument("--log", default="", help="Log file (default: /tmp/vllm-<port>.log).")
    p.add_argument("--no-supervise", action="store_true", help="Do not restart the server after a crash.")

    p = sub.add_parser("generate", help="Generate with the vLLM or the transformers backend.")
    p.add_argument("--backend", choices=["vllm", "hf"], default="vllm")
    p.add_argument("--url", action="append", default=[], help="vLLM replica URL (repeat for several).")
    p.add_argument("--model-dir", default="", help="hf backend: base model directory.")
    p.add_argument("--adapter", action="append", default=[], help="hf backend: NAME=ADAPTER_DIR (repeat).")
    p.add_argument("--model", default="base", help="Model name: base name or adapter name.")
    p.add_argument("--prompt", required=True, help="User message (rendered with the chat template).")
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stream", action="store_true", help="Print pieces as they arrive (n=1).")

    p = sub.add_parser("tiny", help="Build a tiny random policy (+ random LoRA adapters) for tests/benches.")
    p.add_argument("--out", required=True, help="Directory: model/ and adapter-<i>/ are written in it.")
    p.add_argument("--adapters", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)


def _serve(args: argparse.Namespace) -> int:
    from .vllm_server import ServerConfig, VLLMServer

    cfg = ServerConfig(
        model=args.model,
        served_model_name=args.served_model_name,
        port=args.port,
        max_loras=args.max_loras,
        max_lora_rank=args.max_lora_rank,
        max_model_len=args.max_model_len,
        log_path=args.log,
    )
    server = VLLMServer(cfg)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    server.start()
    try:
        server.wait_healthy()
        print(json.dumps({"url": server.url, "pid": server.pid, "log": str(server.log_path)}), flush=True)
        if not args.no_supervise:
            server.supervise()
        while not done.wait(1.0):
            if args.no_supervise and not server.is_running():
                print(f"error: vLLM exited; log:\n{server.tail_log()}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(drain_timeout=10)
    return 0


def _generate(args: argparse.Namespace) -> int:
    if args.backend == "hf":
        from .hf_backend import HFGenerator

        if not args.model_dir:
            raise GenerationError("--model-dir is required with --backend hf")
        adapters = dict(a.split("=", 1) for a in args.adapter)
        gen: Any = HFGenerator(args.model_dir, adapters=adapters)
    else:
        from .vllm_backend import VLLMGenerator

        gen = VLLMGenerator(args.url or ["http://127.0.0.1:8001"])
    params = SamplingParams(
        n=args.n, temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed
    )
    request = GenerationRequest(
        model=args.model, messages=[{"role": "user", "content": args.prompt}], params=params
    )
    if args.stream:
        for piece in gen.stream(request):
            print(piece, end="", flush=True)
        print()
        return 0
    result = gen.generate([request])[0]
    print(json.dumps(result.__dict__, indent=2, ensure_ascii=False))
    return 0


def _tiny(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .tiny import build_tiny_policy, make_random_lora

    out = Path(args.out)
    model = build_tiny_policy(out / "model", num_hidden_layers=args.layers)
    adapters = [
        str(make_random_lora(model, out / f"adapter-{i}", seed=i)) for i in range(1, args.adapters + 1)
    ]
    print(json.dumps({"model_dir": str(model), "adapters": adapters}, indent=2))
    return 0


def run_command(args: argparse.Namespace) -> int:
    return {"serve": _serve, "generate": _generate, "tiny": _tiny}[args.command](args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.generation", description=__doc__.split("\n\n")[0]
    )
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return run_command(args)
    except GenerationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
