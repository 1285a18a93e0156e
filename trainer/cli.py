"""``python -m trainer {bootstrap,sft,reward,policy,evaluate,hh-check}``.

Flags are generated from the config dataclasses (``--learning-rate 1e-4``); ``--config FILE.json``
loads a config first (a run's ``config.json`` works). Bad input exits with code 2 and a message.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from .errors import TrainerError


def _add_config_flags(p: argparse.ArgumentParser, cls: type) -> None:
    g = p.add_argument_group(f"{cls.__name__} options")
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        helptext = f"{f.metadata.get('help', '')} (default: {default!r})"
        if isinstance(default, bool):
            g.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext
            )
        else:
            g.add_argument(flag, dest=f.name, type=type(default), default=None, help=helptext)


def _config(cls: type, ns: argparse.Namespace) -> Any:
    from .config import load_config

    return load_config(cls, ns.config, **{f.name: getattr(ns, f.name) for f in fields(cls)})


def build_parser() -> argparse.ArgumentParser:
    from .bootstrap import BootstrapConfig
    from .evaluate import GateConfig
    from .hh import HHCheckConfig
    from .policy import PolicyConfig
    from .reward import RewardConfig
    from .sft import SFTJobConfig

    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, cls: type, help: str, data: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if data:
            p.add_argument("data", help="JSONL data file (the web app's export).")
        p.add_argument(
            "--out", default=None, help="Run directory to create (default: $TRAINER_HOME/runs/<kind>-<time>)."
        )
        p.add_argument("--config", default=None, help="JSON config file; flags override it.")
        p.add_argument("--quiet", action="store_true", help="No progress bar.")
        _add_config_flags(p, cls)
        p.set_defaults(config_cls=cls)
        return p

    command("bootstrap", BootstrapConfig, "Build and pretrain the local tiny policy model.")
    command("sft", SFTJobConfig, "Supervised fine-tuning on demonstrations {prompt, completion}.", data=True)
    command("reward", RewardConfig, "Train a Bradley-Terry reward model on preference pairs.", data=True)
    p = command(
        "policy", PolicyConfig, "DPO (default) or RLOO policy update; writes a LoRA adapter.", data=True
    )
    p.add_argument(
        "--reward-model", default=None, help="Reward model run dir (needed for RLOO; scores samples)."
    )
    p = command(
        "evaluate", GateConfig, "Compare a candidate adapter with the serving version; gate decision."
    )
    p.add_argument("--candidate", required=True, help="Candidate adapter (or policy run dir).")
    p.add_argument("--reference", default=None, help="Serving adapter (default: the base model).")
    p.add_argument("--base-model", default="", help="Policy base model (default: bootstrapped tiny model).")
    p.add_argument("--reward-model", default=None, help="Reward model run dir for the win rate.")
    p.add_argument("--pairs", default=None, help="Held-out preference pairs JSONL.")
    p.add_argument("--prompts", default=None, help="Held-out prompts JSONL (default: the pairs' prompts).")
    command(
        "hh-check", HHCheckConfig, "Reward model on HH-RLHF harmless (real data); prints held-out accuracy."
    )
    from .generation.cli import add_subcommands

    add_subcommands(sub)  # serve, generate, tiny
    return parser


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .generation.cli import COMMANDS, run_command

    if args.command in COMMANDS:
        return run_command(args)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from .progress import TqdmProgress

    progress = None if args.quiet else TqdmProgress()
    cfg = _config(args.config_cls, args)
    if args.command == "bootstrap":
        from .bootstrap import bootstrap_policy

        model_dir = bootstrap_policy(cfg, args.out, progress)
        result: Any = {
            "model_dir": str(model_dir),
            "metrics": json.loads((model_dir.parent / "metrics.json").read_text()),
        }
    elif args.command == "sft":
        from .sft import run_sft

        result = run_sft(cfg, args.data, args.out, progress)
    elif args.command == "reward":
        from .reward import train_reward_model

        result = train_reward_model(cfg, args.data, args.out, progress)
    elif args.command == "policy":
        from .policy import train_policy

        result = train_policy(cfg, args.data, args.out, args.reward_model, progress)
    elif args.command == "evaluate":
        from .artifacts import write_json
        from .evaluate import evaluate_candidate

        report = evaluate_candidate(
            cfg, args.candidate, args.reference, args.base_model, args.reward_model, args.pairs, args.prompts
        )
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            write_json(Path(args.out) / "gate.json", report.to_dict())
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0 if report.passed else 1
    elif cfg.folds:
        from .hh import hh_cross_validate

        result = hh_cross_validate(cfg, args.out, progress)
        print(
            f"hh-check {cfg.folds}-fold held-out accuracy: {result['accuracy_mean']:.4f} "
            f"+- {result['accuracy_stderr']:.4f} (folds: "
            + ", ".join(f"{f['accuracy']:.4f}" for f in result["folds"])
            + ")",
            file=sys.stderr,
        )
    else:
        from .hh import hh_check

        result = hh_check(cfg, args.out, progress)
        print(f"hh-check held-out accuracy: {result.metrics['eval']['accuracy']:.4f}", file=sys.stderr)
    if not isinstance(result, dict):
        result = {"run_dir": str(result.run_dir), "metrics": result.metrics}
    print(json.dumps(result, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except TrainerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the run was not marked complete", file=sys.stderr)
        return 130
