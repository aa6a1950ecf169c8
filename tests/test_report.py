"""The HTML report: built from the run folder alone, self-contained, escaped, usable in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from evalkit.data.testset import load_testset
from evalkit.pipeline.experiment import RunConfig, run_experiment, write_scores_and_summary
from evalkit.report import render_report

FIXTURES = Path(__file__).parent / "fixtures"
BUNDLED = Path(__file__).parent.parent / "testsets"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OUTPUT = Path(__file__).parent.parent / "test-output"

PLANTED = [
    "<script>window.__pwned = 1</script>",
    '"><img src=x onerror="window.__pwned = 2">',
    "{{ 7 * 7 }} {% raw %}",
]


def _run(tmp_path: Path, name: str = "tiny-intents") -> Path:
    cfg = RunConfig(testset=str(FIXTURES / name), reports_dir=str(tmp_path / "reports"),
                    cache_dir=str(tmp_path / "cache"), finetune_dir=str(tmp_path / "ft"))
    return run_experiment(cfg, progress=False).run_dir


def _plant(run_dir: Path) -> None:
    """Journal hostile outputs for three items (a later line replaces the earlier answer)."""
    preds = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    with (run_dir / "predictions.jsonl").open("a") as fh:
        for p, text in zip([p for p in preds if p["variant"] == "rag"], PLANTED):
            fh.write(json.dumps({**p, "output": text}) + "\n")
    config = json.loads((run_dir / "run.json").read_text())["config"]
    write_scores_and_summary(run_dir, load_testset(config["testset"]), config["variants"])


def test_report_is_self_contained_and_complete(tmp_path):
    run_dir = _run(tmp_path)
    html = render_report(run_dir).read_text()
    assert not re.search(r"""(src|href)=["']?https?://""", html), "no network resources"
    assert html.count("<svg") >= 1, "charts are inline SVG"
    for variant in ("prompt-only", "few-shot", "rag", "fine-tuned", "rag+fine-tuned"):
        assert f"<td>{variant}</td>" in html
    assert "tiny-intents" in html and load_testset(FIXTURES / "tiny-intents").hash[:12] in html


def test_a_local_run_says_its_cost_is_notional_and_names_its_commit(tmp_path, monkeypatch):
    """Started from outside the repo, the run still records evalkit's commit; the local
    provider's cost is never called spent, and a run from no checkout says so."""
    import subprocess

    monkeypatch.chdir(tmp_path)  # not a git checkout
    run_dir = _run(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    head = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert run["git_commit"] == head and run["billing"] == {"notional": True}
    html = render_report(run_dir).read_text()
    assert f"git <code>{head[:10]}</code>" in html
    assert "every cost here is notional" in html and "actually spent" not in html

    run["git_commit"], run["billing"] = None, {"notional": False}
    (run_dir / "run.json").write_text(json.dumps(run))
    html = render_report(run_dir).read_text()
    assert "not a git checkout" in html and "actually spent" in html


def test_planted_markup_is_escaped_in_the_html(tmp_path):
    run_dir = _run(tmp_path)
    _plant(run_dir)
    html = render_report(run_dir).read_text()
    assert "window.__pwned" in html  # the text is there ...
    assert "<script>window.__pwned" not in html  # ... but never as markup
    assert "<img src=x" not in html
    # the explorer's JSON cannot close its own <script> element
    data = html.split('<script type="application/json" id="data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data
    parsed = json.loads(data)
    outputs = [o[0] for it in parsed["items"] for o in it["o"]]
    assert set(PLANTED) <= set(outputs), "the hostile strings survive intact as data"


def _browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    return sync_api


def test_report_of_a_bundled_run_in_headless_chromium(tmp_path):
    """The bundled policy-qa ladder's report, with hostile outputs planted, in a real browser."""
    sync_api = _browser()
    cfg = RunConfig(testset=str(BUNDLED / "policy-qa"), reports_dir=str(tmp_path / "reports"),
                    cache_dir=str(tmp_path / "cache"), finetune_dir=str(tmp_path / "ft"))
    run_dir = run_experiment(cfg, progress=False).run_dir
    # the bundled ladder as run (before planting): rag+fine-tuned repeats rag's answers on
    # every item, so it is "no change from rag" at its higher cost, never a gain (issue 15.2)
    as_run = json.loads((run_dir / "summary.json").read_text())
    combined = next(st for st in as_run["steps"] if st["to"] == "rag+fine-tuned")
    assert combined["verdict"] == "no change" and combined["same_outputs_as"] == "rag"
    assert "rag+fine-tuned: no change from rag; the same output as rag on all 320 items" \
        in combined["reason"]
    _plant(run_dir)
    path = render_report(run_dir)
    OUTPUT.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(path.resolve().as_uri())
        page.screenshot(path=str(OUTPUT / "report-first-screen.png"))

        assert problems == []
        assert page.evaluate("typeof window.__pwned") == "undefined", "planted script ran"
        assert page.locator("#charts svg").count() == 3  # quality/cost, TCO, step deltas
        verdicts = page.locator("#verdicts li.verdict")
        assert verdicts.count() == 4  # one sentence per step of the five-rung ladder
        summary = json.loads((run_dir / "summary.json").read_text())
        # the recommendation and its assumptions come first, as summary.json has them
        assert page.locator("#rec-sentence").inner_text() == \
            summary["recommendation"]["sentence"]
        assert page.locator("#assumptions").inner_text() == \
            summary["economics"]["assumptions_line"]
        rows = page.locator("#assumption-table tbody tr")
        assert rows.count() == len(summary["economics"]["assumptions"])
        cells = [c.text_content() for c in rows.first.locator("td").all()]  # inside <details>
        assert cells == ["queries_per_month", "10000", "default"]
        first = page.locator("#recommendation").bounding_box()["y"]
        assert first < page.locator("#verdicts").bounding_box()["y"]
        for li, step in zip(verdicts.all(), summary["steps"], strict=True):
            text = li.inner_text()  # the verdict once, as the badge, not again in the sentence
            assert text.count(step["verdict"]) == 1 and step["to"] in text
        # the explorer opens on the items the variants disagree on
        narrowed = int(page.locator("#count").inner_text().split()[0])
        assert 0 < narrowed < 320
        page.select_option("#view", "all")
        assert page.locator("#count").inner_text() == "320 of 320 items"
        assert page.locator("#items-body tr.row").count() == 50  # paginated
        # the planted strings show as text, found by the free-text search
        page.fill("#search", "window.__pwned = 1")
        assert page.locator("#count").inner_text() == "1 of 320 items"
        assert page.get_by_text("<script>window.__pwned = 1</script>").count() == 1
        page.fill("#search", "{{ 7 * 7 }}")
        assert page.get_by_text("{{ 7 * 7 }} {% raw %}").count() == 1
        page.fill("#search", "no item says this 1234")
        assert page.locator("#items-body tr.row").count() == 0
        browser.close()


@pytest.mark.parametrize("damage, words", [
    (lambda d: (d / "summary.json").write_text('{"variants": {"rag": '), "summary.json:1:"),
    (lambda d: (d / "scores.csv").write_text("variant,item_id,value\nrag,a,1\n"),
     "scores.csv:1: field 'metric'"),
    (lambda d: (d / "items.jsonl").write_text('{"id": "a"}\nnot json\n'), "items.jsonl:2:"),
])
def test_a_damaged_run_folder_is_named_not_a_traceback(tmp_path, damage, words):
    from click.testing import CliRunner

    from evalkit.cli import main

    run_dir = _run(tmp_path)
    damage(run_dir)
    result = CliRunner().invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 2 and words in result.output, result.output


def test_numeric_answers_render(tmp_path):
    """A QA set may give `expected: 50`; the explorer shows it as text."""
    run_dir = _run(tmp_path, "tiny-qa")
    items = (run_dir / "items.jsonl").read_text().splitlines()
    first = json.loads(items[0]) | {"expected": 50}
    (run_dir / "items.jsonl").write_text("\n".join([json.dumps(first), *items[1:]]) + "\n")
    html = render_report(run_dir).read_text()
    assert '"exp":"50"' in html


def test_an_unanswerable_item_s_expected_cell_says_so(tmp_path):
    """tiny-qa's qte-04 is `expected: null`: the explorer said the word None there."""
    from evalkit.report.explorer import UNANSWERABLE

    html = render_report(_run(tmp_path, "tiny-qa")).read_text()
    row = re.search(r'\{"id":"qte-04"[^}]*?"exp":"([^"]*)"', html)
    assert row and row.group(1) == UNANSWERABLE
    assert '"exp":"None"' not in html
