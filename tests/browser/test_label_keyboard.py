"""Label items with the keyboard only, in a real browser, against a live server."""

from __future__ import annotations

import pytest

from feedback_app.models import Assignment, Demonstration, Judgement
from tests.factories import ProjectFactory, UserFactory, make_item

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CODE_ANSWER = """Use a list comprehension:

```python
def squares(n: int) -> list[int]:
    return [i * i for i in range(n)]
```

It runs in **O(n)** time."""

LOOP_ANSWER = """A plain loop works too:

```python
result = []
for i in range(n):
    result.append(i * i)
```

- easy to read
- a bit slower"""

HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(1)> [click](javascript:alert(1))"


def _item_id(page) -> str:
    return page.locator('#label-form input[name="item_id"]').input_value()


def _wait_for_next(page, previous_item_id: str) -> None:
    page.wait_for_function(
        """(prev) => {
            const f = document.getElementById('label-form');
            // A new item, and htmx has initialised its form (a click before that would post natively).
            return !f || (f.elements.item_id.value !== prev && !!f['htmx-internal-data']);
        }""",
        arg=previous_item_id,
    )


def _shown_order(labeler, item_id: str) -> list[int]:
    return Assignment.objects.get(labeler=labeler, item_id=int(item_id)).shown_order


def test_label_with_keyboard_only(live_server, page, log_in):
    labeler = UserFactory(username="keyboard-labeler")
    project = ProjectFactory(
        name="Keyboard project",
        guidelines="Pick the **correct** and *clear* answer.\n\n- Prefer working code\n- Ties are fine",
    )
    make_item(project, texts=[CODE_ANSWER, LOOP_ANSWER])
    make_item(project, texts=[HOSTILE, "A harmless answer."])
    make_item(project, texts=["Short answer.", "Longer answer, with `inline code`."])
    make_item(project, texts=["First of three.", "Second of three.", "Third of three."])

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    # Log in through the form; the login page sends us back to the label page.
    page.goto(f"{live_server.url}/projects/{project.pk}/label/")
    assert "/accounts/login/" in page.url
    log_in(labeler.username)
    page.wait_for_selector("#label-form")
    assert f"/projects/{project.pk}/label/" in page.url
    page.evaluate("window.__noReloadMarker = 'still-here'")

    # `?` opens the shortcuts dialog; Escape closes it.
    page.keyboard.press("?")
    assert page.locator("#shortcuts").is_visible()
    assert page.locator("#shortcuts").get_attribute("open") is not None
    page.keyboard.press("Escape")
    assert not page.locator("#shortcuts").is_visible()

    # `g` opens the guidelines panel, rendered from Markdown.
    assert not page.locator("#guidelines .md").is_visible()
    page.keyboard.press("g")
    assert page.locator("#guidelines strong").inner_text() == "correct"
    page.keyboard.press("g")

    page.screenshot(path="/tmp/label.png", full_page=True)
    expected: dict[int, tuple[list[list[int]], bool, str]] = {}

    # Item 1: type a rationale first (its "1" must not submit), leave with Escape, press 1.
    item = _item_id(page)
    a, b = _shown_order(labeler, item)
    page.keyboard.press("r")
    page.keyboard.type("Option 1 is clearer = shorter")
    assert _item_id(page) == item, "typing in the rationale must not trigger shortcuts"
    page.keyboard.press("Escape")
    page.wait_for_timeout(30)
    page.keyboard.press("1")
    _wait_for_next(page, item)
    expected[int(item)] = ([[a], [b]], False, "Option 1 is clearer = shorter")

    # Item 2 (holds hostile HTML): 2 means the right one is better.
    item = _item_id(page)
    assert page.locator("#workspace script").count() == 0
    assert page.locator("#workspace [onerror]").count() == 0
    assert page.locator('#workspace a[href^="javascript"]').count() == 0
    a, b = _shown_order(labeler, item)
    page.wait_for_timeout(30)
    page.keyboard.press("2")
    _wait_for_next(page, item)
    expected[int(item)] = ([[b], [a]], False, "")

    # Item 3: a tie, with a better answer written after `w` (its "2" must not submit).
    item = _item_id(page)
    a, b = _shown_order(labeler, item)
    page.keyboard.press("w")
    page.keyboard.type("Answer 2 = fine.")
    page.keyboard.press("Escape")
    page.wait_for_timeout(30)
    page.keyboard.press("=")
    _wait_for_next(page, item)
    expected[int(item)] = ([[a, b]], False, "")

    # Item 4, three responses: 3, undo, then 2 = 3 > 1, Enter.
    item = _item_id(page)
    assert page.locator("#workspace").get_attribute("data-mode") == "rank"
    assert page.locator("#workspace .response").count() == 3
    a, b, c = _shown_order(labeler, item)
    page.keyboard.press("3")
    assert page.locator("#ranking-view .chip").all_inner_texts() == ["3"]
    page.keyboard.press("Backspace")
    assert page.locator("#ranking-view .chip").count() == 0
    page.keyboard.press("Enter")  # incomplete: an inline message, nothing sent
    assert "Rank all 3 responses" in page.locator("#flash").inner_text()
    for key in ("2", "=", "3", "1"):
        page.keyboard.press(key)
    assert page.locator("#ranking-view .chip").all_inner_texts() == ["2", "3", "1"]
    assert page.locator("#response-1 [data-rank-badge]").inner_text() == "2nd"
    page.screenshot(path="/tmp/label-rank.png", full_page=True)
    page.keyboard.press("Enter")
    _wait_for_next(page, item)
    expected[int(item)] = ([[b, c], [a]], False, "")

    # The queue is empty now, and the page never reloaded.
    page.wait_for_selector("#queue-empty")
    assert "all caught up" in page.locator("#queue-empty").inner_text()
    assert page.locator("#flash").inner_text().strip() == ""
    assert page.evaluate("window.__noReloadMarker") == "still-here"

    judgements = {j.item_id: j for j in Judgement.objects.filter(labeler=labeler)}
    assert len(judgements) == 4
    for item_id, (ranking, all_bad, rationale) in expected.items():
        judgement = judgements[item_id]
        assert judgement.ranking == ranking, item_id
        assert judgement.all_bad is all_bad
        assert judgement.rationale == rationale
        assert judgement.time_spent_ms > 0
        assert judgement.shown_order == _shown_order(labeler, str(item_id))
    assert Demonstration.objects.get(labeler=labeler).text == "Answer 2 = fine."
    assert dialogs == [], f"a dialog fired: {dialogs}"


def test_errors_show_inline_and_mouse_works(live_server, page, log_in, settings):
    labeler = UserFactory(username="mouse-labeler")
    project = ProjectFactory(name="Mouse project")
    make_item(project, texts=["Left answer.", "Right answer."])
    make_item(project, texts=["Skipped left.", "Skipped right."])
    make_item(project, texts=["Next left.", "Next right."])

    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.pk}/label/")
    log_in(labeler.username)
    page.wait_for_selector("#label-form")
    page.evaluate("window.__noReloadMarker = 'still-here'")

    # The lease is taken away behind the page's back: the submit answers 409, shown inline.
    item = _item_id(page)
    Assignment.objects.filter(labeler=labeler, item_id=int(item)).update(status=Assignment.Status.SKIPPED)
    page.click('button[data-choice="1"]')
    page.wait_for_selector("#flash .alert-error")
    assert "skipped" in page.locator("#flash").inner_text()
    assert _item_id(page) == item  # the workspace stayed
    assert page.locator('button[data-choice="1"]').is_enabled()

    # "Load my next item" fetches a fresh item into the workspace and clears the message.
    # Click it only once htmx has initialised it (else the browser would follow its plain href).
    page.wait_for_function(
        "() => { const a = document.querySelector('#flash a'); return !!(a && a['htmx-internal-data']); }"
    )
    page.click("#flash a")
    _wait_for_next(page, item)
    assert page.locator("#flash").inner_text().strip() == ""
    # `s` skips.
    item = _item_id(page)
    assert "Skipped left." in page.locator("#workspace").inner_text()
    page.keyboard.press("s")
    _wait_for_next(page, item)
    assert Assignment.objects.get(labeler=labeler, item_id=int(item)).status == Assignment.Status.SKIPPED
    item = _item_id(page)
    page.click('button[data-choice="2"]')
    page.wait_for_selector("#queue-empty")
    assert page.evaluate("window.__noReloadMarker") == "still-here"
    judgement = Judgement.objects.get(labeler=labeler)
    a, b = _shown_order(labeler, item)
    assert judgement.ranking == [[b], [a]]

    page.click("text=Feedback loop")
    page.wait_for_selector(".project-card")
    assert "1 done today" in page.locator(".project-card").inner_text().replace("\n", " ")
    page.screenshot(path="/tmp/home.png")
