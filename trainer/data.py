"""Reading exported preferences and demonstrations (JSONL), validation, hashing and splits.

Preference rows are TRL's ``prompt``/``chosen``/``rejected`` in either plain form (strings) or
conversational form (lists of ``{"role", "content"}`` messages). Extra keys are ignored.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from .errors import DataError, EmptyDatasetError, MissingFileError, OneSidedDatasetError

Messages = list[dict[str, str]]
Text = str | Messages


def _read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"data file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    if not rows:
        raise EmptyDatasetError(f"{path} has no rows")
    return rows


def _is_messages(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in x)


def _check_text(value: Any, where: str, key: str) -> None:
    if isinstance(value, str) or (_is_messages(value) and value):
        return
    raise DataError(f"{where}: '{key}' must be a string or a non-empty list of {{role, content}} messages")


def message_text(x: Text) -> str:
    """The plain content of a text or of a message list (used for comparisons and hashing)."""
    return x if isinstance(x, str) else "\n".join(m["content"] for m in x)


def load_preferences(path: str | Path) -> list[dict[str, Text]]:
    """Load and validate a preference file; returns rows with only prompt/chosen/rejected."""
    raw = _read_jsonl(path)
    sides = {k: sum(k in r for r in raw) for k in ("chosen", "rejected")}
    if min(sides.values()) == 0:
        missing = [k for k, n in sides.items() if n == 0]
        raise OneSidedDatasetError(f"{path}: no row has a '{missing[0]}' side; preference pairs need both")
    rows, ties, kinds = [], 0, set()
    for i, r in enumerate(raw, 1):
        where = f"{path}: row {i}"
        for key in ("prompt", "chosen", "rejected"):
            if key not in r:
                raise DataError(f"{where}: missing key '{key}'")
            _check_text(r[key], where, key)
        kinds.add(isinstance(r["chosen"], str))
        if message_text(r["chosen"]) == message_text(r["rejected"]):
            ties += 1
            continue
        rows.append({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
    if len(kinds) > 1:
        raise DataError(f"{path}: mixes plain and conversational rows; export one format")
    if not rows:
        raise OneSidedDatasetError(f"{path}: all {ties} pairs have chosen == rejected; nothing to learn from")
    return rows


def load_demonstrations(path: str | Path) -> list[dict[str, Text]]:
    """Load SFT demonstrations ``{"prompt", "completion"}`` (``response`` is accepted too)."""
    rows = []
    for i, r in enumerate(_read_jsonl(path), 1):
        completion = r.get("completion", r.get("response"))
        if "prompt" not in r or completion is None:
            raise DataError(f"{path}: row {i}: needs 'prompt' and 'completion'")
        _check_text(r["prompt"], f"{path}: row {i}", "prompt")
        if not isinstance(completion, str) or not completion.strip():
            raise DataError(f"{path}: row {i}: 'completion' must be a non-empty string")
        rows.append({"prompt": r["prompt"], "completion": completion})
    return rows


def load_prompts(path: str | Path) -> list[Text]:
    """Prompts from a JSONL file with a ``prompt`` key (preferences, demonstrations or bare prompts)."""
    prompts = [r["prompt"] for r in _read_jsonl(path) if "prompt" in r]
    if not prompts:
        raise EmptyDatasetError(f"{path}: no row has a 'prompt'")
    return prompts


def data_hash(path: str | Path) -> str:
    """The data snapshot hash: ``manifest.json``'s ``content_hash`` when the export wrote one."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"data file not found: {path}")
    manifest = path.parent / "manifest.json"
    if manifest.is_file():
        try:
            h = json.loads(manifest.read_text()).get("content_hash")
        except json.JSONDecodeError:
            h = None
        if isinstance(h, str) and h:
            return h
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def split(rows: list, eval_fraction: float, seed: int, min_eval: int = 1) -> tuple[list, list]:
    """Deterministic shuffle-split into (train, eval). ``eval_fraction=0`` gives an empty eval set."""
    if eval_fraction <= 0 or len(rows) < 2:
        return list(rows), []
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    n_eval = min(max(min_eval, round(len(rows) * eval_fraction)), len(rows) - 1)
    return [rows[i] for i in idx[n_eval:]], [rows[i] for i in idx[:n_eval]]


def as_messages(x: Text, role: str) -> Messages:
    return x if isinstance(x, list) else [{"role": role, "content": x}]


def to_conversational(row: dict[str, Text]) -> dict[str, Messages]:
    """Plain rows become single-turn conversations so the policy's chat template is always applied."""
    out = {"prompt": as_messages(row["prompt"], "user")}
    for key in ("chosen", "rejected", "completion"):
        if key in row:
            out[key] = as_messages(row[key], "assistant")
    return out


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path
