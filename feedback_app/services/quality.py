"""Labeler quality: counts, speed, agreement with the majority, gold accuracy, and
inter-annotator agreement per project (Krippendorff's alpha on the rankings).

Alpha is computed on pairwise preferences: every (item, response pair) is a unit
and each labeler's ranking gives it an ordinal value (-1, 0 for a tie, +1).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import krippendorff
import numpy as np
from django.contrib.auth import get_user_model

from feedback_app.models import Project
from feedback_app.services.judgements import active_judgements
from feedback_app.services.ranking import agreement, majority_preferences, pair_preferences

MIN_GOLD_FOR_FLAG = 3
PREFERENCE_VALUES = (-1, 0, 1)


@dataclass
class LabelerStats:
    labeler_id: int
    username: str
    judgements: int = 0
    median_time_ms: float | None = None
    majority_agreement: float | None = None
    gold_judgements: int = 0
    gold_accuracy: float | None = None
    flagged: bool = False


@dataclass
class QualityReport:
    project_id: int
    judgements: int
    alpha: float | None
    alpha_units: int
    gold_accuracy_threshold: float
    labelers: list[LabelerStats] = field(default_factory=list)

    @property
    def flagged(self) -> list[LabelerStats]:
        return [stats for stats in self.labelers if stats.flagged]

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["flagged"] = [stats.labeler_id for stats in self.flagged]
        return body


def krippendorff_alpha(unit_value_counts: list[list[int]]) -> float | None:
    """Ordinal alpha from per-unit counts of each value; None when nothing is pairable."""
    pairable = [row for row in unit_value_counts if sum(row) >= 2]
    if not pairable:
        return None
    counts = np.asarray(pairable, dtype=float)
    if np.count_nonzero(counts.sum(axis=0)) < 2:
        # Every label is the same value: perfect agreement, alpha undefined; report 1.0.
        return 1.0
    return float(krippendorff.alpha(value_counts=counts, level_of_measurement="ordinal"))


def project_quality(project: Project) -> QualityReport:
    rows = (
        active_judgements()
        .filter(item__project=project)
        .values_list(
            "item_id", "labeler_id", "ranking", "time_spent_ms", "item__is_gold", "item__gold_ranking"
        )
        .order_by("item_id", "id")
    )
    times: dict[int, list[int]] = defaultdict(list)
    gold_scores: dict[int, list[float]] = defaultdict(list)
    by_item: dict[int, list[tuple[int, list[list[int]]]]] = defaultdict(list)
    total = 0
    for item_id, labeler_id, ranking, time_ms, is_gold, gold_ranking in rows.iterator(chunk_size=5000):
        total += 1
        times[labeler_id].append(time_ms)
        if is_gold and gold_ranking:
            gold_scores[labeler_id].append(agreement(ranking, gold_ranking))
        else:
            by_item[item_id].append((labeler_id, ranking))

    agree_hits: dict[int, int] = defaultdict(int)
    agree_total: dict[int, int] = defaultdict(int)
    unit_counts: list[list[int]] = []
    for judgements in by_item.values():
        per_pair: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
        for _, ranking in judgements:
            for pair, preference in pair_preferences(ranking).items():
                per_pair[pair][PREFERENCE_VALUES.index(preference)] += 1
        unit_counts.extend(per_pair.values())
        if len(judgements) < 2:
            continue
        for index, (labeler_id, ranking) in enumerate(judgements):
            # Leave-one-out majority: agreement with the others, not with oneself.
            others = majority_preferences(r for i, (_, r) in enumerate(judgements) if i != index)
            mine = pair_preferences(ranking)
            for pair, preference in others.items():
                agree_total[labeler_id] += 1
                agree_hits[labeler_id] += int(mine.get(pair) == preference)

    names = dict(get_user_model().objects.filter(pk__in=times.keys()).values_list("pk", "username"))
    labelers = []
    for labeler_id in sorted(times, key=lambda pk: names.get(pk, "")):
        gold = gold_scores.get(labeler_id, [])
        stats = LabelerStats(
            labeler_id=labeler_id,
            username=names.get(labeler_id, str(labeler_id)),
            judgements=len(times[labeler_id]),
            median_time_ms=statistics.median(times[labeler_id]),
            majority_agreement=(
                agree_hits[labeler_id] / agree_total[labeler_id] if agree_total[labeler_id] else None
            ),
            gold_judgements=len(gold),
            gold_accuracy=sum(gold) / len(gold) if gold else None,
        )
        stats.flagged = (
            stats.gold_judgements >= MIN_GOLD_FOR_FLAG
            and stats.gold_accuracy is not None
            and stats.gold_accuracy < project.gold_accuracy_threshold
        )
        labelers.append(stats)
    return QualityReport(
        project_id=project.pk,
        judgements=total,
        alpha=krippendorff_alpha(unit_counts),
        alpha_units=sum(1 for row in unit_counts if sum(row) >= 2),
        gold_accuracy_threshold=project.gold_accuracy_threshold,
        labelers=labelers,
    )
