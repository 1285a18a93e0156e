"""Importing prompts and responses from JSONL and CSV."""

from __future__ import annotations

import json
import time

import pytest
from django.core.management import CommandError, call_command

from feedback_app.models import ComparisonItem, ItemResponse, ModelVersion, Prompt, Response, messages_hash
from feedback_app.services.errors import InvalidInput
from feedback_app.services.imports import ImportRejected, import_prompts
from tests.factories import PromptFactory


def jsonl(*rows: object) -> bytes:
    return "\n".join(json.dumps(row) if not isinstance(row, str) else row for row in rows).encode() + b"\n"


def run(project, data: bytes, name: str = "prompts.jsonl", **kwargs):
    return import_prompts(project=project, data=data, file_name=name, **kwargs)


def test_jsonl_import_creates_prompts_items_and_responses(project):
    data = jsonl(
        {"prompt": "What is 2+2?"},
        {"id": "q-2", "prompt": "Name a prime.", "responses": ["2", "4"], "metadata": {"topic": "math"}},
        {
            "id": 3,
            "prompt": "Pick a colour.",
            "responses": [
                {"text": "red", "model": "m-a", "params": {"temperature": 0.7}},
                {"text": "blue", "model": "m-b"},
                "green",
            ],
        },
    )
    report = run(project, data)
    assert report.to_dict() == {
        "prompts_created": 3,
        "items_created": 2,
        "responses_created": 5,
        "duplicates": [],
    }
    prompt = Prompt.objects.get(project=project, external_id="q-2")
    assert prompt.messages == [{"role": "user", "content": "Name a prime."}]
    assert prompt.metadata == {"topic": "math"}
    assert prompt.content_hash == messages_hash(prompt.messages)
    item = ComparisonItem.objects.get(prompt__external_id="3")
    assert item.judgements_wanted == project.judgements_per_item
    assert not item.is_gold
    links = list(ItemResponse.objects.filter(item=item).select_related("response__model_version"))
    assert [link.position for link in links] == [0, 1, 2]
    assert [link.response.text for link in links] == ["red", "blue", "green"]
    assert [link.response.model_version.name for link in links] == ["m-a", "m-b", "imported"]
    assert links[0].response.generation_params == {"temperature": 0.7}
    assert not ComparisonItem.objects.filter(prompt__messages__0__content="What is 2+2?").exists()


def test_multi_turn_prompt_and_gold_ranking(project):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    data = jsonl({"messages": messages, "responses": ["A", "B", "C"], "gold_ranking": [[2], [0, 1]]})
    run(project, data, model_version_name="gen-1")
    prompt = Prompt.objects.get(project=project)
    assert prompt.messages == messages and prompt.is_multi_turn
    item = ComparisonItem.objects.get(prompt=prompt)
    ids = item.response_ids()
    assert item.is_gold
    assert item.gold_ranking == [[ids[2]], [ids[0], ids[1]]]
    assert set(Response.objects.filter(prompt=prompt).values_list("model_version__name", flat=True)) == {
        "gen-1"
    }


def test_csv_import(project):
    data = (
        b"id,prompt,response_1,model_1,response_2,model_2,response_3\n"
        b'c1,"Why is the sky blue?","Rayleigh scattering",m1,"Because.",m2,\n'
        b'c2,"Multi\nline prompt",,,,,\n'
        b"c3,Third,x,,y,,z\n"
    )
    report = run(project, data, name="prompts.CSV")
    assert (report.prompts_created, report.items_created, report.responses_created) == (3, 2, 5)
    item = ComparisonItem.objects.get(prompt__external_id="c1")
    texts = [link.response.text for link in item.response_links.select_related("response")]
    assert texts == ["Rayleigh scattering", "Because."]
    assert Prompt.objects.get(external_id="c2").messages == [
        {"role": "user", "content": "Multi\nline prompt"}
    ]


def test_one_bad_row_rejects_the_whole_file_with_row_numbers(project):
    data = jsonl(
        {"prompt": "good one"},
        {"prompt": ""},
        "",
        "{not json",
        {"prompt": "ok", "responses": ["only one"]},
        {"prompt": "x", "colour": "red"},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"messages": [{"role": "robot", "content": "a"}]},
        {"prompt": "y", "responses": ["a", "b"], "gold_ranking": [[0], [5]]},
        {"prompt": "also good", "responses": ["a", "b"]},
    )
    with pytest.raises(ImportRejected) as caught:
        run(project, data)
    error = caught.value
    assert isinstance(error, InvalidInput) and error.status_code == 400
    assert "7 bad row(s)" in error.message
    rows = {entry["row"]: entry["errors"] for entry in error.details}
    assert sorted(rows) == [2, 4, 5, 6, 7, 8, 9]
    assert "prompt is empty" in rows[2][0]
    assert "not valid JSON" in rows[4][0]
    assert "2 to 9" in rows[5][0]
    assert "'colour'" in rows[6][0]
    assert "last message must be from the user" in rows[7][0]
    assert "robot" in rows[8][0]
    assert "gold_ranking" in rows[9][0]
    assert not Prompt.objects.filter(project=project).exists()
    assert not Response.objects.exists()


def test_bad_csv_row_and_bad_header(project):
    data = b"prompt,response_1,response_2\nfine,a,b\n,a,b\nfine too,a,a\n"
    with pytest.raises(ImportRejected) as caught:
        run(project, data, name="p.csv")
    assert [entry["row"] for entry in caught.value.details] == [3, 4]
    with pytest.raises(ImportRejected) as caught:
        run(project, b"question,response_1\nx,y\n", name="p.csv")
    assert caught.value.details[0]["row"] == 1
    assert any("no 'prompt' column" in e for e in caught.value.details[0]["errors"])
    assert not Prompt.objects.exists()


def test_too_many_responses_and_limits(project, settings):
    settings.FEEDBACK = {**settings.FEEDBACK, "MAX_PROMPT_CHARS": 10, "MAX_RESPONSE_CHARS": 5}
    data = jsonl(
        {"prompt": "short", "responses": [f"r{i}" for i in range(10)]},
        {"prompt": "much too long a prompt"},
        {"prompt": "short", "responses": ["tiny", "far too long"]},
        {"prompt": "nul\u0000byte"},
        {"prompt": "ok", "metadata": [1]},
    )
    with pytest.raises(ImportRejected) as caught:
        run(project, data)
    rows = {entry["row"]: " ".join(entry["errors"]) for entry in caught.value.details}
    assert "holds 10" in rows[1]
    assert "the limit is 10" in rows[2]
    assert "the limit is 5" in rows[3]
    assert "NUL" in rows[4]
    assert "metadata must be a JSON object" in rows[5]


def test_duplicates_are_reported_and_skipped(project):
    existing = PromptFactory(project=project, messages=[{"role": "user", "content": "Already here"}])
    PromptFactory(project=project, external_id="ext-9", messages=[{"role": "user", "content": "Other"}])
    data = jsonl(
        {"prompt": "Already here"},
        {"prompt": "New"},
        {"prompt": "New", "responses": ["a", "b"]},
        {"id": "ext-9", "prompt": "Different text"},
        {"id": "mine", "prompt": "One"},
        {"id": "mine", "prompt": "Two"},
    )
    report = run(project, data)
    assert report.prompts_created == 2
    assert report.items_created == 0
    by_row = {d["row"]: d for d in report.duplicates}
    assert sorted(by_row) == [1, 3, 4, 6]
    assert by_row[1]["existing_prompt_id"] == existing.pk
    assert "row 2" in by_row[3]["reason"]
    assert "ext-9" in by_row[4]["reason"]
    assert "row 5" in by_row[6]["reason"]
    # The same file again: everything is a duplicate, nothing is created.
    again = run(project, data)
    assert again.prompts_created == 0 and len(again.duplicates) == 6


def test_oversize_non_utf8_empty_and_unknown_format(project, settings):
    settings.FEEDBACK_MAX_IMPORT_BYTES = 50
    with pytest.raises(InvalidInput, match="import limit is 50"):
        run(project, jsonl({"prompt": "x" * 100}))
    settings.FEEDBACK_MAX_IMPORT_BYTES = 10_000
    with pytest.raises(InvalidInput, match=r"not valid UTF-8.*line 2"):
        run(project, b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(InvalidInput, match="no rows"):
        run(project, b"\n\n")
    with pytest.raises(InvalidInput, match="Cannot tell the format"):
        run(project, jsonl({"prompt": "x"}), name="prompts.txt")
    with pytest.raises(InvalidInput, match="Unknown import format"):
        run(project, jsonl({"prompt": "x"}), fmt="xml")
    assert run(project, jsonl({"prompt": "x"}), name="prompts.txt", fmt="jsonl").prompts_created == 1


def test_utf8_bom_and_crlf_are_accepted(project):
    data = "\ufeffprompt,id\r\nbonjour,1\r\nçà,2\r\n".encode()
    assert run(project, data, name="p.csv").prompts_created == 2
    assert Prompt.objects.get(external_id="2").messages[0]["content"] == "çà"


@pytest.mark.slow
def test_ten_thousand_rows_import_quickly(project):
    data = jsonl(
        *({"id": i, "prompt": f"Prompt {i}", "responses": [f"a{i}", f"b{i}"]} for i in range(10_000))
    )
    started = time.perf_counter()
    report = run(project, data)
    elapsed = time.perf_counter() - started
    assert (report.prompts_created, report.items_created, report.responses_created) == (
        10_000,
        10_000,
        20_000,
    )
    assert ItemResponse.objects.filter(item__project=project).count() == 20_000
    assert elapsed < 15, f"10k rows took {elapsed:.1f}s"


def test_management_command(project, tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl({"prompt": "a"}, {"prompt": "b", "responses": ["x", "y"]}))
    call_command("import_prompts", str(good), "--project", project.name)
    report = json.loads(capsys.readouterr().out)
    assert report["prompts_created"] == 2 and report["items_created"] == 1

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl({"prompt": "c"}, {"prompt": 5}))
    with pytest.raises(CommandError, match="1 bad row"):
        call_command("import_prompts", str(bad), "--project", project.name)
    assert "row 2: prompt must be a string" in capsys.readouterr().err

    with pytest.raises(CommandError, match="--create-project"):
        call_command("import_prompts", str(good), "--project", "Nope")
    call_command("import_prompts", str(good), "--project", "Fresh", "--create-project")
    assert Prompt.objects.filter(project__name="Fresh").count() == 2
    assert ModelVersion.objects.filter(name="imported").exists()
