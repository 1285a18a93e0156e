"""Labeler statistics, gold accuracy flags and Krippendorff's alpha."""

from __future__ import annotations

import pytest

from feedback_app.services.assignment import lease_next_item
from feedback_app.services.judgements import submit_judgement
from feedback_app.services.quality import krippendorff_alpha, project_quality
from tests.factories import ProjectFactory, UserFactory, make_item

pytestmark = pytest.mark.django_db


def _judge_all(project, user, choose):
    """Judge every item available to ``user``; ``choose(item, response_ids)`` returns the ranking."""
    n = 0
    while (lease := lease_next_item(project=project, labeler=user)) is not None:
        ids = sorted(lease.assignment.shown_order)
        submit_judgement(
            labeler=user,
            item_id=lease.item.pk,
            ranking=choose(lease.item, ids),
            client_key=f"{user.pk}-{n}",
            time_spent_ms=1000 + n,
        )
        n += 1


def test_alpha_is_one_for_perfect_agreement_and_negative_for_systematic_disagreement():
    assert krippendorff_alpha([[0, 0, 3], [3, 0, 0], [0, 0, 3]]) == pytest.approx(1.0)
    assert krippendorff_alpha([[1, 0, 1], [1, 0, 1], [1, 0, 1]]) < 0
    assert krippendorff_alpha([[0, 0, 1]]) is None


def test_quality_report_flags_labelers_who_fail_gold_items():
    project = ProjectFactory(judgements_per_item=4, gold_rate=0.5, gold_accuracy_threshold=0.7)
    for _ in range(6):
        make_item(project)
    for _ in range(4):
        make_item(project, is_gold=True)  # gold ranking: lowest response id best
    good = [UserFactory(username=f"good{i}") for i in range(3)]
    bad = UserFactory(username="contrarian")

    def best_first(item, ids):
        return [[rid] for rid in ids]

    def worst_first(item, ids):
        return [[rid] for rid in reversed(ids)]

    for user in good:
        _judge_all(project, user, best_first)
    _judge_all(project, bad, worst_first)

    report = project_quality(project)
    stats = {s.username: s for s in report.labelers}
    assert stats["contrarian"].gold_accuracy == 0.0
    assert stats["contrarian"].flagged
    assert stats["contrarian"].majority_agreement == 0.0
    for user in good:
        assert stats[user.username].gold_accuracy == 1.0
        assert not stats[user.username].flagged
        assert stats[user.username].majority_agreement == 1.0  # the other two good labelers outvote
    assert stats["good0"].median_time_ms >= 1000
    assert report.flagged == [stats["contrarian"]]
    assert report.alpha is not None and report.alpha < 0.5
    body = report.to_dict()
    assert body["flagged"] == [bad.pk]
