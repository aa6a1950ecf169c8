"""`evalkit compare` (issue 13.5): two runs of support-intents, one on the embedded local
provider and one against the loopback OpenAI-compatible server, paired on their items."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openai_server import FakeOpenAI, cli
from scipy import stats as sps

from evalkit.analysis.compare import compare_runs, economics_line

BUNDLED = Path(__file__).parent.parent / "testsets"
LIMIT = "60"  # the first 60 items of support-intents keep the test quick


def _latest(reports: Path) -> Path:
    return max((p for p in reports.iterdir() if p.is_dir() and not p.is_symlink()
                and (p / "summary.json").is_file()), key=lambda p: p.stat().st_mtime)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    common = ["--variants", "prompt-only,few-shot", "--limit", LIMIT, "--no-progress",
              "--cache-dir", tmp / "cache", "--finetune-dir", tmp / "ft"]
    cli("run", BUNDLED / "support-intents", "--reports-dir", tmp / "local", *common)
    with FakeOpenAI() as server:
        cli("run", BUNDLED / "support-intents", "--provider", "openai", "--base-url",
            server.base_url, "--reports-dir", tmp / "served",
            *common)
    return _latest(tmp / "local"), _latest(tmp / "served")


def _accuracy(run_dir: Path, variant: str) -> pd.Series:
    s = pd.read_csv(run_dir / "scores.csv")
    s = s[(s.variant == variant) & (s.metric == "accuracy")]
    return s.set_index(s.item_id.astype(str))["value"]


def test_compare_writes_page_and_markdown(two_runs, tmp_path):
    a, b = two_runs
    out = tmp_path / "cmp"
    result = cli("compare", a, b, "--out", out)
    page, md = (out / "compare.html").read_text(), (out / "compare.md").read_text()
    assert "A:prompt-only" in page and "B:few-shot" in page
    assert md.startswith(f"# evalkit compare: {a.name} (A) vs {b.name} (B)")
    assert md.count("\n- A:") == 2, md  # one sentence per shared variant name
    assert "Warning" not in md, "same test set, same subset: no warning"
    assert md in result.output


def test_a_paired_difference_matches_scipy(two_runs):
    """few-shot, local (A) against the served model (B): McNemar's exact p is scipy's
    two-sided binomial test on the discordant items, the delta their mean difference."""
    a, b = two_runs
    c = compare_runs(a, b)
    pair = next(r for r in c.pairs if r.a == "A:few-shot")
    xa, xb = _accuracy(a, "few-shot"), _accuracy(b, "few-shot")
    xb = xb.reindex(xa.index)
    assert c.paired == len(xa) == int(LIMIT)
    only_a, only_b = int(((xa == 1) & (xb == 0)).sum()), int(((xa == 0) & (xb == 1)).sum())
    assert pair.discordant == (only_a, only_b)
    assert pair.delta == pytest.approx(float(np.mean(xb - xa)))
    assert only_a + only_b > 0, "the two providers answer differently on some items"
    assert pair.p_value == pytest.approx(sps.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    assert pair.p_method == "mcnemar_exact"


def test_a_different_test_set_is_warned_and_only_unchanged_items_pair(two_runs, tmp_path):
    a, b = two_runs
    changed = tmp_path / b.name
    import shutil

    shutil.copytree(b, changed)
    items = [json.loads(x) for x in (changed / "items.jsonl").read_text().splitlines()]
    items[0]["expected"] = "bug_report" if items[0]["expected"] != "bug_report" else "sso_setup"
    (changed / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items[:-5]))
    run = json.loads((changed / "run.json").read_text())
    run["testset"]["hash"] = "0" * 64
    (changed / "run.json").write_text(json.dumps(run))
    c = compare_runs(a, changed)
    assert not c.same_testset
    assert c.paired == int(LIMIT) - 5 - 1
    assert any("test sets differ" in w for w in c.warnings)
    assert any("1 shared items changed" in w for w in c.warnings)


def test_baseline_variant_pairs_it_with_every_other(two_runs):
    a, b = two_runs
    c = compare_runs(a, b, baseline_variant="B:prompt-only")
    assert [(r.a, r.b) for r in c.pairs] == [("B:prompt-only", "A:prompt-only"),
                                             ("B:prompt-only", "A:few-shot"),
                                             ("B:prompt-only", "B:few-shot")]
    with pytest.raises(ValueError, match="no such variant"):
        compare_runs(a, b, baseline_variant="rag")


def test_compare_page_in_chromium(two_runs, tmp_path):
    """The page shows the numbers compare_runs computed, and nothing errs in the console."""
    from test_report_browser import CHROMIUM, WIDTH, browser_api, screenshot

    api = browser_api()
    a, b = two_runs
    cli("compare", a, b, "--out", tmp_path)
    c = compare_runs(a, b)
    with api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto((tmp_path / "compare.html").resolve().as_uri())
        rows = page.locator("#pairs tbody tr").all()
        assert len(rows) == len(c.pairs)
        for row, r in zip(rows, c.pairs, strict=True):
            assert row.get_attribute("data-a") == r.a and row.get_attribute("data-b") == r.b
            assert row.locator("td.delta").inner_text() == f"{r.delta:.4f}"
        assert page.locator("#paired").inner_text() == str(c.paired)
        assert page.locator("figure.chart svg").count() == 1
        screenshot(page, "compare.png", full_page=True)
        assert problems == []
        browser.close()


def test_per_variant_cost_and_tco_match_each_runs_summary(two_runs, tmp_path):
    """The cost table (page and Markdown alike) quotes each run's own summary.json: B's
    few-shot TCO at the run's economics, its run total and $/query; with the same default
    economics in both runs a pair's sentence and row carry the two TCOs."""
    from evalkit.money import usd

    a, b = two_runs
    out = tmp_path / "cmp"
    cli("compare", a, b, "--out", out)
    page, md = (out / "compare.html").read_text(), (out / "compare.md").read_text()
    c = compare_runs(a, b)
    assert c.same_economics and c.economics_a.queries_per_month == 10_000
    for side, run_dir in (("A", a), ("B", b)):
        summary = json.loads((run_dir / "summary.json").read_text())
        for name, v in summary["variants"].items():
            t = next(t for t in c.variants if t.key == f"{side}:{name}")
            assert t.tco_usd == pytest.approx(v["cost"]["tco_usd"])
            assert t.total_usd == pytest.approx(v["cost"]["total_notional_usd"])
            assert t.per_query_usd == pytest.approx(v["cost"]["per_query_usd"])
            assert t.mean == pytest.approx(v["metrics"]["accuracy"]["mean"])
    fs = json.loads((b / "summary.json").read_text())["variants"]["few-shot"]["cost"]
    tco, total = usd(fs["tco_usd"]), usd(fs["total_notional_usd"])
    assert "| B:few-shot | " in md
    row = next(x for x in md.splitlines() if x.startswith("| B:few-shot | "))
    assert row.endswith(f"| {tco} |") and f"| {total} |" in row
    assert ('<tr data-variant="B:few-shot">' in page and
            f'<td class="tco">{tco}</td>' in page and f'<td class="total">{total}</td>' in page)
    pair = next(r for r in c.pairs if r.b == "B:few-shot")
    a_tco = json.loads((a / "summary.json").read_text())["variants"]["few-shot"]["cost"][
        "tco_usd"]
    assert pair.tco_usd_b == pytest.approx(fs["tco_usd"])
    assert f"TCO {usd(a_tco)} → {tco}." in pair.sentence
    assert f"- {pair.sentence}" in md and f'<td class="tco money">{usd(a_tco)} → {tco}</td>' in page
    assert "TCO at 10,000 queries/month over 12 months (both runs)." in md


def _with_economics(run_dir: Path, dest: Path, economics: dict | None) -> Path:
    import shutil
    shutil.copytree(run_dir, dest, symlinks=True)
    summary = json.loads((dest / "summary.json").read_text())
    if economics is None:
        summary.pop("economics", None)
    else:
        summary["economics"] = {**summary.get("economics", {}), **economics}
    (dest / "summary.json").write_text(json.dumps(summary))
    return dest


def test_tcos_are_paired_only_under_the_same_stated_economics(two_runs, tmp_path):
    """A different volume in B: no pair quotes TCOs and the line says the assumptions differ.
    Neither run stating its economics is not 'different assumptions', and pairs no TCOs
    either (a TCO with no stated volume and horizon is not comparable)."""
    a, b = two_runs
    c = compare_runs(a, _with_economics(b, tmp_path / "b-volume", {"queries_per_month": 5}))
    assert not c.same_economics and all(r.tco_usd_a is None for r in c.pairs)
    assert "different assumptions" in economics_line(c)
    c = compare_runs(_with_economics(a, tmp_path / "a-none", None),
                     _with_economics(b, tmp_path / "b-none", None))
    assert not c.same_economics
    assert all(r.tco_usd_a is None and r.tco_usd_b is None and "TCO" not in r.sentence
               for r in c.pairs)
    assert "different" not in economics_line(c) and "no TCO is compared" in economics_line(c)


def test_a_variants_items_are_those_its_mean_is_over_with_failed_calls_apart(two_runs,
                                                                             tmp_path):
    """A run whose calls failed on some items: its table row gave the mean over the items
    scored but counted every item ('0.647 ... 71' for 44 of 68), so it did not add up with
    the pairs, which count a failed call as a wrong answer. The row now says the items the
    mean is over and the failed calls beside them."""
    a, _ = two_runs
    common = ["--variants", "prompt-only,few-shot", "--limit", LIMIT, "--no-progress",
              "--cache-dir", tmp_path / "cache", "--finetune-dir", tmp_path / "ft"]
    with FakeOpenAI(permanent_400=["forgot-password", "Lucas Petit"]) as server:
        cli("run", BUNDLED / "support-intents", "--provider", "openai", "--base-url",
            server.base_url, "--reports-dir", tmp_path / "failing", *common)
    b = _latest(tmp_path / "failing")
    summary = json.loads((b / "summary.json").read_text())["variants"]["few-shot"]
    n, failed = summary["metrics"]["accuracy"]["n"], summary["calls"]["errors"]
    assert failed >= 2 and n + failed == int(LIMIT)
    c = compare_runs(a, b)
    row = next(t for t in c.variants if t.key == "B:few-shot")
    assert (row.items, row.failed) == (n, failed)
    out = tmp_path / "cmp"
    md = cli("compare", a, b, "--out", out).output
    assert f"| {n} (+{failed} failed) |" in md
    assert f"{n} (+{failed} failed)" in (out / "compare.html").read_text()
