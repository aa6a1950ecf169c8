"""The bundled reports in headless Chromium, clicked through as a reviewer would (issue 13).

Both bundled ladders are run once (local provider, seconds) and their reports opened at
1,400 px. What the page shows is checked against the run folder's own files: the variants
table and the recommendation against summary.json, a confusion-matrix cell and the
"A right, B wrong" count against scores.csv, an expanded item's retrieved passages against
predictions.jsonl; the filter must survive a reload and the console must stay clean.

Screenshots go to test-output/; with EVALKIT_SCREENSHOTS=docs they also replace the ones the
README shows in docs/img/ (commit those on purpose, not on every test run).
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from evalkit.money import usd
from evalkit.pipeline.experiment import RunConfig, run_experiment
from evalkit.report import render_report

ROOT = Path(__file__).parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OUTPUT = ROOT / "test-output"
DOCS_IMG = ROOT / "docs" / "img"
WIDTH = 1400


def screenshot(page, name: str, *, docs: bool = True, **kw) -> None:
    """Save to test-output/, and to docs/img/ when EVALKIT_SCREENSHOTS=docs (and `docs`)."""
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / name), **kw)
    if docs and os.environ.get("EVALKIT_SCREENSHOTS") == "docs":
        shutil.copy(OUTPUT / name, DOCS_IMG / name)


def browser_api():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api")


# the rungs each check needs, so the two runs take seconds: a confusion matrix and a pair of
# rungs on support-intents, a retrieving rung on policy-qa; the README's screenshots
# (EVALKIT_SCREENSHOTS=docs) show policy-qa's full ladder
RUNGS = {"support-intents": ["prompt-only", "few-shot"],
         "policy-qa": (["prompt-only", "few-shot", "rag", "fine-tuned", "rag+fine-tuned"]
                       if os.environ.get("EVALKIT_SCREENSHOTS") == "docs"
                       else ["prompt-only", "rag"])}


@pytest.fixture(scope="module")
def bundled(tmp_path_factory) -> dict[str, Path]:
    """Each bundled test set run once and its report drawn: {test set name: run folder}."""
    tmp = tmp_path_factory.mktemp("bundled")
    out = {}
    for name, rungs in RUNGS.items():
        cfg = RunConfig(testset=str(ROOT / "testsets" / name), reports_dir=str(tmp / "r"),
                        cache_dir=str(tmp / "c"), finetune_dir=str(tmp / "ft"), variants=rungs)
        out[name] = run_experiment(cfg, progress=False).run_dir
        render_report(out[name])
    return out


@pytest.fixture(scope="module")
def chromium():
    api = browser_api()
    with api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(path.resolve().as_uri())
    return page, problems


def scores(run_dir: Path, metric: str) -> pd.DataFrame:
    """scores.csv as item x variant for one metric."""
    s = pd.read_csv(run_dir / "scores.csv", dtype={"item_id": str})
    s = s[s.metric == metric]
    return s.pivot_table(index="item_id", columns="variant", values="value", aggfunc="last")


def check_variants_table(page, summary: dict) -> None:
    primary = summary["primary_metric"]
    head = [c.inner_text() for c in page.locator("#variants thead th").all()]
    col, cost_col = head.index(primary), head.index("$/query")
    rows = page.locator("#variants tbody tr").all()
    assert [r.locator("td").first.inner_text() for r in rows] == summary["ladder"]
    for row, name in zip(rows, summary["ladder"], strict=True):
        cells = row.locator("td").all()
        v = summary["variants"][name]
        stat = v["metrics"][primary]
        assert cells[col].inner_text().split("\n")[0] == f"{stat['mean']:.3f}", name
        assert f"[{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]" in cells[col].inner_text()
        assert cells[cost_col].inner_text() == usd(v["cost"]["per_query_usd"]), name
    table = page.locator("#variants")
    assert table.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth"), \
        "the variants table fits 1,400 px without a scrollbar"


def test_support_intents_report_matches_its_run_folder(bundled, chromium):
    run_dir = bundled["support-intents"]
    summary = json.loads((run_dir / "summary.json").read_text())
    page, problems = open_page(chromium, run_dir / "index.html")
    screenshot(page, "report-support-intents-first-screen.png", docs=False)
    check_variants_table(page, summary)
    if summary.get("recommendation"):
        assert page.locator("#rec-sentence").inner_text() == \
            summary["recommendation"]["sentence"]

    # one confusion-matrix cell: few-shot's correct answers on one label, from scores.csv
    acc = scores(run_dir, "accuracy")
    items = pd.read_json(run_dir / "items.jsonl", lines=True, dtype={"id": str})
    label = "upgrade_plan"
    ids = items.loc[items.expected == label, "id"]
    want = int(acc.loc[ids, "few-shot"].sum())
    page.select_option("#cm-variant", label="few-shot")
    block = page.locator('.cm-block[data-variant="few-shot"]')
    assert block.is_visible()
    assert not page.locator('.cm-block[data-variant="prompt-only"]').is_visible()
    cell = block.locator(f'td[data-row="{label}"][data-col="{label}"]')
    assert int(cell.inner_text() or 0) == want
    support = block.locator(f'table.prf tr[data-label="{label}"] td').nth(1).inner_text()
    assert int(support) == len(ids)

    # "A right, B wrong" for few-shot against prompt-only, counted from scores.csv
    ladder = summary["ladder"]
    a, b = "few-shot", "prompt-only"
    want = int(((acc[a] == 1) & (acc[b] == 0)).sum())
    page.select_option("#view", "pair")
    page.select_option("#pair-a", str(ladder.index(a)))
    page.select_option("#pair-b", str(ladder.index(b)))
    total = len(items)
    assert page.locator("#count").inner_text() == f"{want} of {total} items"
    page.reload()
    assert page.locator("#view").input_value() == "pair", "the filter survives a reload"
    assert page.locator("#pair-a").input_value() == str(ladder.index(a))
    assert page.locator("#count").inner_text() == f"{want} of {total} items"
    assert problems == []


def test_policy_qa_explorer_shows_retrieved_passages(bundled, chromium):
    run_dir = bundled["policy-qa"]
    summary = json.loads((run_dir / "summary.json").read_text())
    page, problems = open_page(chromium, run_dir / "index.html")
    screenshot(page, "report-first-screen.png")
    check_variants_table(page, summary)
    assert page.locator("#view").input_value() == "disagree", "opens on disagreements"
    first = page.locator("#items-body tr.row").first
    item_id = first.get_attribute("data-id")
    first.click()
    detail = page.locator(f'tr.detail[data-detail="{item_id}"]')
    journal = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
    retrieved = next(p["retrieved"] for p in journal
                     if p["item_id"] == item_id and p["variant"] == "rag")
    assert retrieved, "the rag rung retrieved passages for this item"
    shown = detail.locator('.dv[data-variant="rag"] .retrieved .doc')
    assert [d.get_attribute("data-doc") for d in shown.all()] == retrieved
    gold = json.loads(next(x for x in (run_dir / "items.jsonl").read_text().splitlines()
                           if json.loads(x)["id"] == item_id))["doc_ids"]
    marked = detail.locator('.dv[data-variant="rag"] .retrieved .doc.gold')
    assert {d.get_attribute("data-doc") for d in marked.all()} == set(gold) & set(retrieved)
    # the messages rag sent: the passages it was given, then the question
    sent = detail.locator('.dv[data-variant="rag"] details.msgs')
    sent.locator("summary").click()
    texts = [m.inner_text() for m in sent.locator(".msg").all()]
    question = json.loads(next(x for x in (run_dir / "items.jsonl").read_text().splitlines()
                               if json.loads(x)["id"] == item_id))["input"]
    assert texts[-1].endswith(f"Question: {question}")
    assert all(f"({doc})" in texts[-1] for doc in retrieved)
    assert f"open={item_id}" in page.evaluate("location.hash")
    page.evaluate("document.getElementById('count').scrollIntoView()")
    screenshot(page, "report-explorer.png")
    assert problems == []


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory) -> Path:
    """tiny-intents with --epochs 3 against the sampling loopback server: one variant at
    temperature 0.9 (its answers vary by seed), one at 0 (they do not)."""
    from openai_server import FIXTURES, KEY, FakeOpenAI, cli, run_dirs_args
    from test_epochs import _config

    tmp = tmp_path_factory.mktemp("epochs-report")
    with pytest.MonkeyPatch.context() as env, FakeOpenAI(sampling=True) as server:
        env.setenv("OPENAI_API_KEY", KEY)  # the loopback server's test key (module scope)
        env.delenv("OPENAI_BASE_URL", raising=False)
        # in a thread of its own: once Playwright's loop runs in this one (the module's
        # browser may start first), asyncio.run cannot
        with ThreadPoolExecutor(1) as pool:
            pool.submit(cli, "run", FIXTURES / "tiny-intents", "--config",
                        _config(tmp, server.base_url), "--epochs", "3",
                        *run_dirs_args(tmp)).result()
    run_dir = (tmp / "reports" / "latest-tiny-intents").resolve()
    render_report(run_dir)
    return run_dir


def test_flaky_view_counts_what_epoch_scores_say(sampled_run, chromium):
    """The "flaky across epochs" view: for any variant and for each one, the count equals the
    items whose accuracy differs between epochs in epoch_scores.csv; an expanded item shows
    each epoch's score as the file has it; the view survives a reload."""
    run_dir = sampled_run
    by_epoch = pd.read_csv(run_dir / "epoch_scores.csv", dtype={"item_id": str})
    acc = by_epoch[by_epoch.metric == "accuracy"]
    wide = acc.pivot_table(index=["variant", "item_id"], columns="epoch", values="value")
    flaky = {v: {i for (vv, i), row in wide.iterrows() if vv == v and row.nunique() > 1}
             for v in acc.variant.unique()}
    summary = json.loads((run_dir / "summary.json").read_text())
    ladder, total = summary["ladder"], len(acc.item_id.unique())
    assert len(flaky["sampled"]) == summary["epochs"]["variants"]["sampled"]["n_flaky"] > 0
    assert flaky["greedy"] == set()
    page, problems = open_page(chromium, run_dir / "index.html")
    page.select_option("#view", "flaky")
    union = set().union(*flaky.values())
    assert page.locator("#count").inner_text() == f"{len(union)} of {total} items"
    for v in ladder:
        page.select_option("#flaky-v", str(ladder.index(v)))
        assert page.locator("#count").inner_text() == f"{len(flaky[v])} of {total} items", v
    page.select_option("#flaky-v", str(ladder.index("sampled")))
    first = page.locator("#items-body tr.row").first
    item_id = first.get_attribute("data-id")
    assert item_id in flaky["sampled"]
    first.click()
    box = page.locator(f'tr.detail[data-detail="{item_id}"] .dv[data-variant="sampled"]')
    shown = [float(b.inner_text()) for b in box.locator(".ep b[data-epoch]").all()]
    assert shown == wide.loc[("sampled", item_id)].tolist()
    assert "flaky" in box.locator(".ep").inner_text()
    page.reload()
    assert page.locator("#view").input_value() == "flaky", "the view survives a reload"
    assert page.locator("#flaky-v").input_value() == str(ladder.index("sampled"))
    assert page.locator("#count").inner_text() == f"{len(flaky['sampled'])} of {total} items"
    assert page.locator(f'tr.detail[data-detail="{item_id}"]').is_visible(), "and the item"
    page.evaluate("document.getElementById('count').scrollIntoView()")
    screenshot(page, "report-flaky.png", docs=False)
    assert problems == []


def test_a_wrong_answer_says_why_in_the_explorer(bundled, chromium):
    """Each failure explained: a classification answer that scored 0 says the label it was
    read as (or that it named none or several), as the task type's explain says it."""
    from evalkit.data.testset import load_testset
    from evalkit.tasks.classification import explain

    run_dir = bundled["support-intents"]
    task = load_testset(ROOT / "testsets" / "support-intents").task
    s = scores(run_dir, "accuracy")
    item_id = s[s["prompt-only"] == 0].index[0]
    journal = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
    answer = next(p["output"] for p in journal
                  if p["item_id"] == item_id and p["variant"] == "prompt-only")
    expected = json.loads(next(x for x in (run_dir / "items.jsonl").read_text().splitlines()
                               if json.loads(x)["id"] == item_id))["expected"]
    from urllib.parse import urlencode

    items = {json.loads(x)["id"]: json.loads(x)
             for x in (run_dir / "items.jsonl").read_text().splitlines()}
    page, problems = open_page(chromium, run_dir / "index.html")

    def opened(item: str):
        page.goto((run_dir / "index.html").resolve().as_uri() + "#" + urlencode(
            {"view": "all", "q": items[item]["input"][:40], "open": item}))
        page.reload()
        return page.locator(f'tr.detail[data-detail="{item}"] .dv[data-variant="prompt-only"]')

    why = opened(item_id).locator("[data-why]").inner_text()
    assert why == explain(expected, answer, task) and why.startswith(("read as", "names"))
    right = s[s["prompt-only"] == 1].index[0]
    box = opened(right)
    assert box.count() == 1 and box.locator("[data-why]").count() == 0  # nothing to explain
    assert not problems, problems
