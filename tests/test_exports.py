"""Exporting preferences in TRL's format as versioned, hashed snapshots."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command

from feedback_app.models import ComparisonItem, Demonstration, ExportSnapshot, Judgement
from feedback_app.services import exports
from feedback_app.services.assignment import lease_next_item
from feedback_app.services.errors import Conflict, InvalidInput
from feedback_app.services.exports import (
    ExportFailed,
    ExportOptions,
    create_export,
    export_path,
    iter_export_lines,
)
from feedback_app.services.judgements import correct_judgement, submit_judgement
from tests.factories import PromptFactory, UserFactory, make_item
from trainer.data import load_demonstrations, load_preferences


def judge(item: ComparisonItem, ranking, *, all_bad: bool = False, demonstration: str = "", labeler=None):
    """A judgement written directly (the lease flow is covered by its own test)."""
    labeler = labeler or UserFactory()
    judgement = Judgement.objects.create(
        item=item,
        labeler=labeler,
        ranking=ranking,
        all_bad=all_bad,
        shown_order=[rid for group in ranking for rid in group],
        client_key=uuid.uuid4().hex,
    )
    if demonstration:
        Demonstration.objects.create(
            prompt=item.prompt, item=item, labeler=labeler, text=demonstration, judgement=judgement
        )
    return judgement


def export(project, **options) -> tuple[ExportSnapshot, list[dict]]:
    snapshot = create_export(project=project, options=ExportOptions(**options))
    lines = [json.loads(line) for line in iter_export_lines(snapshot)]
    return snapshot, lines


def pairs_of(rows: list[dict]) -> list[tuple[str, str]]:
    def text(side):
        return side if isinstance(side, str) else side[0]["content"]

    return [(text(row["chosen"]), text(row["rejected"])) for row in rows]


def test_plain_majority_row_has_trl_shape(project):
    item = make_item(project, texts=["good", "bad"])
    good, bad = item.response_ids()
    j1 = judge(item, [[good], [bad]])
    j2 = judge(item, [[good], [bad]])
    judge(item, [[bad], [good]])
    snapshot, rows = export(project)
    assert snapshot.status == ExportSnapshot.Status.COMPLETE
    assert rows == [
        {
            "prompt": item.prompt.messages[0]["content"],
            "chosen": "good",
            "rejected": "bad",
            "item_id": item.pk,
            "chosen_response_id": good,
            "rejected_response_id": bad,
            "judgement_ids": [j1.pk, j2.pk],
            "votes": 2,
            "weight": round(2 / 3, 6),
            "tie": False,
            "demonstration_id": None,
        }
    ]
    path = export_path(snapshot, "preferences.jsonl")
    assert load_preferences(path) == [{"prompt": rows[0]["prompt"], "chosen": "good", "rejected": "bad"}]
    manifest = json.loads(export_path(snapshot, "manifest.json").read_text())
    assert manifest["content_hash"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["content_hash"] == snapshot.content_hash
    assert manifest["counts"]["judgements"] == 3 and manifest["counts"]["pairs"] == 1
    assert manifest["version"] == snapshot.version == 1
    assert manifest["options"] == ExportOptions().to_dict()


def test_conversational_and_multi_turn_prompts(project):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "A joke?"},
    ]
    item = make_item(project, texts=["funny", "dull"])
    item.prompt.messages = messages
    item.prompt.save()
    funny, dull = item.response_ids()
    judge(item, [[funny], [dull]])
    _, rows = export(project, format="conversational")
    assert rows[0]["prompt"] == messages
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "funny"}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "dull"}]
    snapshot = ExportSnapshot.objects.get(project=project, version=1)
    assert load_preferences(export_path(snapshot, "preferences.jsonl"))[0]["prompt"] == messages
    _, plain = export(project, format="plain")
    assert plain[0]["prompt"] == "system: Be brief.\nuser: Hi\nassistant: Hello!\nuser: A joke?"


def test_three_way_ranking_with_a_tie_expands_to_pairs(project):
    item = make_item(project, texts=["A", "B", "C"])
    a, b, c = item.response_ids()
    judge(item, [[a], [b, c]])
    _, rows = export(project, aggregation="all")
    assert pairs_of(rows) == [("A", "B"), ("A", "C")]
    assert not any(row["tie"] for row in rows)
    snapshot, rows = export(project, aggregation="all", ties="both")
    assert pairs_of(rows) == [("A", "B"), ("A", "C"), ("B", "C"), ("C", "B")]
    assert [row["tie"] for row in rows] == [False, False, True, True]
    assert snapshot.counts["ties"] == 1 and snapshot.counts["pairs"] == 4
    # Majority over one judgement gives the same pairs, ordered by response id.
    _, rows = export(project, ties="both")
    assert sorted(pairs_of(rows)) == [("A", "B"), ("A", "C"), ("B", "C"), ("C", "B")]


def test_all_bad_options(project):
    item = make_item(project, texts=["meh", "worse"])
    meh, worse = item.response_ids()
    bad = judge(item, [[meh], [worse]], all_bad=True, demonstration="A real answer.")
    judge(item, [[meh], [worse]], all_bad=True)
    judge(item, [[worse], [meh]])
    snapshot, rows = export(project)
    assert rows == [] and snapshot.counts["all_bad"] == 2
    _, rows = export(project, all_bad="keep")
    assert pairs_of(rows) == [("meh", "worse")]
    snapshot, rows = export(project, all_bad="demonstration")
    assert pairs_of(rows) == [("A real answer.", "meh"), ("A real answer.", "worse")]
    demo = Demonstration.objects.get(judgement=bad)
    assert {row["demonstration_id"] for row in rows} == {demo.pk}
    assert rows[0]["chosen_response_id"] is None and rows[0]["votes"] == 2
    assert snapshot.counts["demonstration_pairs"] == 2
    # Every judgement on its own: the demonstration for both all-bad ones, the ranking of the third.
    _, rows = export(project, all_bad="demonstration", aggregation="all")
    assert pairs_of(rows) == [("A real answer.", "meh"), ("A real answer.", "worse")] * 2 + [("worse", "meh")]
    demo_lines = list(iter_export_lines(snapshot, "demonstrations.jsonl"))
    assert json.loads(demo_lines[0]) == {
        "prompt": item.prompt.messages[0]["content"],
        "completion": "A real answer.",
        "demonstration_id": demo.pk,
    }
    assert (
        load_demonstrations(export_path(snapshot, "demonstrations.jsonl"))[0]["completion"]
        == "A real answer."
    )


def test_majority_versus_all(project):
    item = make_item(project, texts=["x", "y"])
    x, y = item.response_ids()
    judge(item, [[x], [y]])
    judge(item, [[y], [x]])
    split = make_item(project, texts=["p", "q"])
    p, q = split.response_ids()
    for ranking in ([[p], [q]], [[p], [q]], [[p], [q]], [[q], [p]]):
        judge(split, ranking)
    snapshot, rows = export(project)
    assert pairs_of(rows) == [("p", "q")]
    assert rows[0]["votes"] == 3 and rows[0]["weight"] == 0.75
    assert snapshot.counts["split_votes"] == 1
    snapshot, rows = export(project, aggregation="all")
    assert pairs_of(rows) == [("x", "y"), ("y", "x"), ("p", "q"), ("p", "q"), ("p", "q"), ("q", "p")]
    assert all(len(row["judgement_ids"]) == 1 and row["weight"] == 1.0 for row in rows)
    assert snapshot.counts["judgements"] == 6 and snapshot.counts["items"] == 2


def test_superseded_judgements_are_excluded(project, labeler):
    item = make_item(project, texts=["first", "second"])
    first, second = item.response_ids()
    old = judge(item, [[first], [second]], labeler=labeler)
    correction = correct_judgement(
        labeler=labeler, judgement_id=old.pk, ranking=[[second], [first]], client_key="fix-1"
    ).judgement
    snapshot, rows = export(project)
    assert pairs_of(rows) == [("second", "first")]
    assert rows[0]["judgement_ids"] == [correction.pk]
    assert ExportSnapshot.objects.get(pk=snapshot.pk).judgement_ids == [correction.pk]


@pytest.mark.django_db(transaction=True)
def test_versions_hash_and_judgement_ids(project):
    """Outside a test transaction, so the export runs its own REPEATABLE READ transaction."""
    item = make_item(project, texts=["a", "b"])
    a, b = item.response_ids()
    ids = [judge(item, [[a], [b]]).pk for _ in range(3)]
    other = make_item(project, texts=["c", "d"])
    c, d = other.response_ids()
    ids.append(judge(other, [[d], [c]]).pk)
    first = create_export(project=project, options=ExportOptions())
    second = create_export(project=project, options=ExportOptions())
    assert (first.version, second.version) == (1, 2)
    assert first.content_hash == second.content_hash
    assert export_path(first) != export_path(second)
    assert export_path(first).name == "v1" and export_path(first).parent.name == str(project.pk)
    assert sorted(ExportSnapshot.objects.get(pk=first.pk).judgement_ids) == sorted(ids)
    assert first.counts["judgements"] == 4 and first.counts["items"] == 2 and first.counts["pairs"] == 2
    assert first.finished_at is not None and first.error == ""
    judge(other, [[d], [c]])
    third = create_export(project=project, options=ExportOptions())
    assert third.version == 3 and third.content_hash != first.content_hash
    conversational = create_export(project=project, options=ExportOptions(format="conversational"))
    assert conversational.content_hash != third.content_hash
    assert not list(export_path(first).parent.glob(".*tmp"))


def test_failed_export_leaves_no_file(project, monkeypatch):
    item = make_item(project, texts=["a", "b"])
    a, b = item.response_ids()
    judge(item, [[a], [b]])

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(exports, "_write_demonstrations", explode)
    with pytest.raises(ExportFailed, match="disk full"):
        create_export(project=project, options=ExportOptions())
    snapshot = ExportSnapshot.objects.get(project=project)
    assert snapshot.status == ExportSnapshot.Status.FAILED
    assert "disk full" in snapshot.error
    assert snapshot.file_path == "" and snapshot.finished_at is not None
    root = Path(exports.settings.EXPORT_ROOT) / str(project.pk)
    assert list(root.iterdir()) == []
    with pytest.raises(Conflict):
        list(iter_export_lines(snapshot))
    monkeypatch.undo()
    assert create_export(project=project, options=ExportOptions()).version == 2


def test_min_judgements_and_gold(project):
    once = make_item(project, texts=["a", "b"])
    a, b = once.response_ids()
    judge(once, [[a], [b]])
    twice = make_item(project, texts=["c", "d"])
    c, d = twice.response_ids()
    judge(twice, [[c], [d]])
    judge(twice, [[c], [d]])
    gold = make_item(project, texts=["g1", "g2"], is_gold=True)
    g1, g2 = gold.response_ids()
    judge(gold, [[g1], [g2]])
    snapshot, rows = export(project, min_judgements=2)
    assert pairs_of(rows) == [("c", "d")]
    assert snapshot.counts["dropped_items"] == 1 and snapshot.counts["judgements"] == 2
    assert len(ExportSnapshot.objects.get(pk=snapshot.pk).judgement_ids) == 2
    _, rows = export(project)
    assert pairs_of(rows) == [("a", "b"), ("c", "d")]
    _, rows = export(project, include_gold=True)
    assert pairs_of(rows) == [("a", "b"), ("c", "d"), ("g1", "g2")]


def test_options_are_validated():
    assert ExportOptions.from_dict({"format": "conversational"}).format == "conversational"
    assert ExportOptions.from_dict(None) == ExportOptions()
    with pytest.raises(InvalidInput, match=r"unknown export option.*'colour'"):
        ExportOptions.from_dict({"colour": "red"})
    with pytest.raises(InvalidInput, match="ties='maybe'"):
        ExportOptions.from_dict({"ties": "maybe"})
    with pytest.raises(InvalidInput, match="min_judgements"):
        ExportOptions(min_judgements=0).validate()
    with pytest.raises(InvalidInput, match="include_gold"):
        ExportOptions.from_dict({"include_gold": "yes"})
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        ExportOptions.from_dict(["plain"])


def test_empty_project_exports_empty_files(project):
    PromptFactory(project=project)
    snapshot, rows = export(project)
    assert rows == [] and snapshot.counts["pairs"] == 0
    assert snapshot.content_hash == "sha256:" + hashlib.sha256(b"").hexdigest()


def test_real_lease_and_submit_flow_and_command(project, capsys):
    item = make_item(project, texts=["helpful", "rude"])
    helpful, rude = item.response_ids()
    for n in range(3):
        labeler = UserFactory()
        lease = lease_next_item(project=project, labeler=labeler)
        assert lease is not None and lease.item.pk == item.pk
        ranking = [[helpful], [rude]] if n < 2 else [[rude], [helpful]]
        submit_judgement(labeler=labeler, item_id=item.pk, ranking=ranking, client_key=f"k{n}")
    call_command("export_preferences", "--project", project.name, "--aggregation", "all", "--ties", "both")
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["version"] == 1 and manifest["counts"]["pairs"] == 3
    assert manifest["options"]["aggregation"] == "all"
    snapshot = ExportSnapshot.objects.get(project=project)
    assert manifest["content_hash"] == snapshot.content_hash


def test_an_orphan_folder_from_a_reset_database_does_not_block_the_version(project, labeler, settings):
    from feedback_app.services.assignment import lease_next_item
    from feedback_app.services.exports import ExportOptions, create_export
    from feedback_app.services.judgements import submit_judgement
    from tests.factories import make_item

    item = make_item(project)
    lease = lease_next_item(project=project, labeler=labeler)
    submit_judgement(labeler=labeler, item_id=item.pk, ranking=lease.assignment.shown_order, client_key="o")
    orphan = settings.EXPORT_ROOT / str(project.pk) / "v1"
    orphan.mkdir(parents=True)
    (orphan / "preferences.jsonl").write_text("stale\n")
    snapshot = create_export(project=project, options=ExportOptions())
    assert snapshot.version == 1 and snapshot.status == "complete"
    assert "stale" not in (orphan / "preferences.jsonl").read_text()
