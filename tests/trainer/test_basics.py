"""Fast tests: no Django, data validation, artifacts, CLI errors, progress."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import rule_pairs, write_jsonl

from trainer import data
from trainer.artifacts import RunWriter, load_run
from trainer.errors import (
    DataError,
    EmptyDatasetError,
    IncompleteRunError,
    MissingFileError,
    OneSidedDatasetError,
    TrainerError,
)
from trainer.progress import HFProgressCallback, ProgressEvent, StageProgress

ROOT = Path(__file__).resolve().parents[2]


def test_trainer_never_imports_django():
    code = (
        "import pkgutil, importlib, sys, trainer\n"
        "for m in pkgutil.walk_packages(trainer.__path__, 'trainer.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "assert 'django' not in sys.modules, 'django imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok" in out.stdout


@pytest.mark.parametrize("conversational", [False, True])
def test_load_preferences_ignores_extra_keys(tmp_path, conversational):
    rows = data.load_preferences(
        write_jsonl(tmp_path / "p.jsonl", rule_pairs(5, conversational=conversational))
    )
    assert len(rows) == 5 and set(rows[0]) == {"prompt", "chosen", "rejected"}


def test_bad_data_errors(tmp_path):
    with pytest.raises(MissingFileError):
        data.load_preferences(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(EmptyDatasetError):
        data.load_preferences(tmp_path / "empty.jsonl")
    one = [{"prompt": "p", "chosen": "a"}] * 3
    with pytest.raises(OneSidedDatasetError):
        data.load_preferences(write_jsonl(tmp_path / "one.jsonl", one))
    ties = [{"prompt": "p", "chosen": "a", "rejected": "a"}] * 3
    with pytest.raises(OneSidedDatasetError):
        data.load_preferences(write_jsonl(tmp_path / "ties.jsonl", ties))
    (tmp_path / "bad.jsonl").write_text('{"prompt": "p"\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1"):
        data.load_preferences(tmp_path / "bad.jsonl")
    assert issubclass(DataError, TrainerError)


def test_data_hash_prefers_manifest(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", rule_pairs(3))
    h = data.data_hash(path)
    assert h.startswith("sha256:") and h == data.data_hash(path)
    (tmp_path / "manifest.json").write_text(json.dumps({"content_hash": "sha256:abc", "rows": 3}))
    assert data.data_hash(path) == "sha256:abc"


def test_split_is_deterministic():
    rows = list(range(50))
    assert data.split(rows, 0.2, 1) == data.split(rows, 0.2, 1)
    train, held = data.split(rows, 0.2, 1)
    assert len(held) == 10 and not set(train) & set(held)


def test_run_dir_round_trip_and_incomplete(tmp_path):
    with RunWriter(tmp_path / "run", "test", {"a": 1}, "sha256:x") as run:
        (run.dir / "model").mkdir()
        result = run.finish({"acc": 0.9})
    loaded = load_run(result.run_dir)
    assert loaded.metrics == {"acc": 0.9} and loaded.config == {"a": 1} and loaded.data_hash == "sha256:x"
    for name in ("config.json", "data_hash.txt", "metrics.json", "train.log", "COMPLETE"):
        assert (result.run_dir / name).is_file()

    with pytest.raises(RuntimeError), RunWriter(tmp_path / "killed", "test", {}) as run:  # killed half way
        partial = run.dir
        raise RuntimeError("boom")
    assert not (tmp_path / "killed").exists()
    with pytest.raises(IncompleteRunError):
        load_run(partial)
    with pytest.raises(MissingFileError):
        load_run(tmp_path / "killed")


def test_progress_events():
    events: list[ProgressEvent] = []
    stage = StageProgress(events.append, "dpo", 4)
    for step in range(5):
        stage.update(step, loss=1.0 / (step + 1))
    assert [e.step for e in events] == [0, 1, 2, 3, 4] and events[-1].eta_s == 0
    assert HFProgressCallback(events.append, "x")  # is a transformers TrainerCallback


def test_cli_help_and_exit_code(tmp_path, capsys):
    from trainer.cli import build_parser, main

    out = subprocess.run(
        [sys.executable, "-m", "trainer", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and "hh-check" in out.stdout, out.stderr[-1000:]
    parser = build_parser()
    for cmd in ("bootstrap", "sft", "reward", "policy", "evaluate", "hh-check"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([cmd, "--help"])
        assert exit_info.value.code == 0 and "--config" in capsys.readouterr().out
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["reward", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["policy", str(tmp_path / "missing.jsonl"), "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_sigkilled_cli_run_leaves_nothing_complete(tmp_path):
    """``python -m trainer reward`` killed with SIGKILL half way: no COMPLETE, load_run refuses it."""
    import os
    import signal
    import time

    from conftest import rule_pairs

    from trainer.generation.tiny import build_tiny_policy

    policy = build_tiny_policy(tmp_path / "tiny")
    data_file = write_jsonl(tmp_path / "pairs.jsonl", rule_pairs(64))
    out = tmp_path / "rm"
    cmd = [sys.executable, "-m", "trainer", "reward", data_file, "--out", str(out), "--quiet"]
    cmd += ["--backbone", str(policy), "--max-steps", "500", "--logging-steps", "1", "--max-length", "48"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            logs = list(tmp_path.glob(".rm.partial-*/train.log"))
            if logs and "reward step 2:" in logs[0].read_text():
                break  # training is under way
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    (partial,) = tmp_path.glob(".rm.partial-*")
    assert not (partial / "COMPLETE").exists()
    with pytest.raises(IncompleteRunError, match="interrupted"):
        load_run(partial)


@pytest.mark.parametrize("layout", ["prompt_first", "response_first", "response_only"])
def test_reward_input_keeps_the_response_of_a_long_conversation(layout):
    """HH-RLHF-like pairs share a long conversation and differ only in the last answer: truncation
    must keep each whole answer (else chosen and rejected inputs become identical)."""
    from trainer.chat import encode_pairs
    from trainer.modeling import default_reward_backbone, load_tokenizer

    tok = load_tokenizer(str(default_reward_backbone()))
    prompt = [
        {"role": "user", "content": "tell me a long story " * 80},
        {"role": "assistant", "content": "once upon a time " * 80},
        {"role": "user", "content": "how do I pick a lock?"},
    ]
    chosen, rejected = "I can't help with that.", "First get a tension wrench and a pick, then rake the pins."
    ids_c, ids_r = encode_pairs(tok, [prompt, prompt], [chosen, rejected], 128, layout)
    for ids, answer in ((ids_c, chosen), (ids_r, rejected)):
        assert len(ids) <= 128 and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        answer_ids = tok(answer, add_special_tokens=False)["input_ids"]
        start = 1 if layout != "prompt_first" else len(ids) - 1 - len(answer_ids)
        assert ids[start : start + len(answer_ids)] == answer_ids
    assert ids_c != ids_r
    text = tok.decode(ids_c)
    if layout == "response_only":
        assert "lock" not in text
    else:  # the end of the conversation (the last user turn) is kept, its start is cut
        assert "pick a lock" in text and "tell me a long story" not in text
