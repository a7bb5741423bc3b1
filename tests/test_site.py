"""The static leaderboard site, built from records of quick real runs: pages, ranking, marks, figures,
provenance, failures said plainly, safe replacement; then the same site in headless Chromium (marked
``browser``)."""

from __future__ import annotations

import dataclasses
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest
from site_records import MODADD_TASK, SITE_TASK, site_records
from test_cli import run_cli

from modbench.errors import UserError
from modbench.results.leaderboard import leaderboard
from modbench.results.record import ResultRecord
from modbench.results.store import ResultStore
from modbench.site import build_site


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[ResultRecord]:
    """The toy runs, and the pair discoverers' rows again as circle_detection: the published rows exist for the
    paper's tasks only, and this puts real-shaped rows of ours beside them."""
    made = site_records(tmp_path_factory.mktemp("site-home"))
    beside = [dataclasses.replace(r, task="circle_detection", config_hash="cd" + r.config_hash[2:],
                                  cell="cd" + r.cell[2:], id=100 + (r.id or 0))
              for r in made if r.circuit_size and r.task == SITE_TASK]
    return made + beside


@pytest.fixture(scope="module")
def site(records, tmp_path_factory) -> Path:
    """The site of those records, figures included (built once: the tests below only read it)."""
    root = tmp_path_factory.mktemp("site") / "site"
    summary = build_site(records, root)
    assert (summary.tasks, summary.records, summary.unavailable) == (3, len(records), 0)
    return root


class Page(HTMLParser):
    """What a test reads from a page: every link and source, and each table body row's class and cell texts."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.urls, self.rows, self.images, self._cell = path, [], [], [], None
        self.tables: list[list[tuple[str, list[str]]]] = []
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        self.urls += [attrs[key] for key in ("href", "src") if key in attrs]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and "class" in attrs:
            self.tables[-1].append((attrs["class"], []))
        elif tag == "td" and self.tables and self.tables[-1]:
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.tables[-1][-1][1].append(" ".join(self._cell.split()))
            self._cell = None


def test_every_task_gets_a_ranked_page_with_marks_figures_and_the_records_behind_each_row(records, site):
    root = site
    index = Page(root / "index.html")
    assert {"site_toy.html", "circle_detection.html"} <= set(index.urls)
    page = Page(root / "circle_detection.html")
    ranked, failed_rows = page.tables
    table = leaderboard(records, "circle_detection", "toy")
    table = table[table["status"] == "ok"]  # failed rows are apart
    expected = [f"{m} {d} {v}" for m, d, v in zip(table["method"], table["discoverer"], table["variant"], strict=True)]
    shown = [" ".join(cells[2:5]) for _, cells in ranked]
    assert shown == expected  # the leaderboard's ranking, ours then published
    classes = [kind for kind, _ in ranked]
    assert classes.count("published") == 5 and all(kind.startswith("ours") for kind in classes[:-5])
    assert [cells[0] for _, cells in ranked[:3]] == ["1", "2", "3"] and "ours canonical" in classes
    canonical_logit = [cells[6] for kind, cells in ranked if kind == "ours canonical"]
    assert sum(value.endswith("*") for value in canonical_logit) == 1  # the best canonical row is starred
    other = [cells[6] for kind, cells in ranked if "attribution_patching" in cells]
    assert other and other[0].endswith("*")  # another discoverer's best default row has its own star
    assert len(failed_rows) == 1 and "below the task's quality floor" in " ".join(failed_rows[0][1])
    toy = Page(root / "site_toy.html")
    for image in toy.images + page.images:  # every figure is a PNG of the site
        assert (root / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = (root / "site_toy.html").read_text()
    assert all(label in labels for label in ("weights with the circuit", "ON/OFF", "sparsity against faithfulness"))
    assert "unavailable" not in labels
    acdc = next(cells for _, cells in toy.tables[0] if "acdc" in cells)
    assert "edges in circuit" in labels and "weights with the circuit" in acdc[-2]  # an edge circuit, drawn
    modadd = (root / f"{MODADD_TASK}.html").read_text()
    assert all(label in modadd for label in ("weights with the circuit", "fourier"))
    linked = {url for path in root.glob("*.html") for url in Page(path).urls}
    for record in records:  # one click from its row: the record's page and the record itself
        assert f"records/{record.config_hash}.html" in linked
        stored = json.loads((root / "records" / f"{record.config_hash}.json").read_text())
        assert ResultRecord.from_dict(stored) == record
        text = (root / "records" / f"{record.config_hash}.html").read_text()
        assert record.provenance["device"] in text and record.config_hash in text and "method_config" in text


def test_no_page_asks_for_anything_outside_the_site(site):
    for path in site.rglob("*.html"):
        for url in Page(path).urls:
            assert ":" not in url.split("/")[0] or url == "data:,", (path.name, url)  # no scheme, no host
            target = (path.parent / url).resolve() if url != "data:," else None
            assert target is None or target.is_file(), (path.name, url)


def test_a_figure_that_cannot_be_made_is_said_plainly(records, tmp_path):
    gone = dataclasses.replace(records[0], provenance=records[0].provenance | {"checkpoint": "/nowhere/m.pt"})
    unstored = dataclasses.replace(records[1], details={k: v for k, v in records[1].details.items()
                                                        if k != "node_circuit"})
    build_site([gone, unstored], tmp_path / "site")
    text = " ".join((tmp_path / "site" / f"{SITE_TASK}.html").read_text().split())
    assert "weights unavailable: model unavailable: checkpoint /nowhere/m.pt is not on the machine" in text
    assert "weights with the circuit unavailable: this record does not store its circuit" in text
    assert len(Page(tmp_path / "site" / f"{SITE_TASK}.html").images) == 2  # the second row's weights and scatter


def test_a_rebuild_replaces_the_site_whole_and_a_foreign_folder_is_refused(records, tmp_path, monkeypatch):
    site = tmp_path / "site"
    build_site(records, site, figures=False)
    assert (site / "records" / f"{records[0].config_hash}.html").exists()
    build_site(records[1:3], site, figures=False)
    assert not (site / "records" / f"{records[0].config_hash}.html").exists()  # nothing stale left behind
    before = sorted(p.relative_to(site) for p in site.rglob("*"))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("modbench.site.build._write_record", broken)
    with pytest.raises(RuntimeError):
        build_site(records, site, figures=False)
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before  # the old site, whole
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no staging folder left
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="holds no modbench site"):
        build_site(records, foreign)
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"]


def test_the_command_builds_the_site_from_the_results_database_and_refuses_bad_folders(records, tmp_path, capsys):
    store = ResultStore(tmp_path / "r.sqlite")
    for record in records[:3]:
        store.append(dataclasses.replace(record, id=None))
    code, out, err = run_cli(["leaderboard", "site", str(tmp_path / "out"), "--results", str(store.path)], capsys)
    assert code == 0, err
    assert "1 task pages, 3 records" in out and (tmp_path / "out" / f"{SITE_TASK}.html").exists()
    (tmp_path / "file").write_text("x")
    for target, expected in ((tmp_path / "file", "is a file"), (tmp_path, "holds no modbench site"),
                             (Path("/etc/passwd/site"), "is not a directory")):
        code, _, err = run_cli(["leaderboard", "site", str(target), "--results", str(store.path)], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and expected in lines[0] and "Traceback" not in err
    code, _, err = run_cli(["leaderboard", "site", str(tmp_path / "x"), "--results", str(tmp_path / "none.sqlite")],
                           capsys)
    assert code == 2 and "does not exist" in err and not (tmp_path / "x").exists()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_or_skip():  # noqa: ANN201
    """Playwright's sync API, or a skip where no browser is installed (a failure under MODBENCH_REQUIRE_BROWSER=1,
    as in CI, where a skipped browser test would hide a broken site)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = "playwright is not installed" if sync_playwright is None else (
        f"{CHROMIUM} is not installed (apt-get install chromium)" if not CHROMIUM.exists() else "")
    if missing and os.environ.get("MODBENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"MODBENCH_REQUIRE_BROWSER=1 but {missing}")
    if missing:
        pytest.skip(missing)
    return sync_playwright


def column_keys(page, column: str) -> list[str]:  # noqa: ANN001
    return page.eval_on_selector_all(
        f"table.leaderboard tbody tr td:nth-child({column})", "cells => cells.map(c => c.dataset.sort)")


@pytest.mark.browser
def test_the_site_opens_offline_in_chromium_sorts_and_shows_every_figure(site, tmp_path):
    sync_playwright = chromium_or_skip()
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1600, "height": 1000})
        try:
            page = browser.new_page()
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto((site / "index.html").as_uri())
            page.click("text=circle_detection")
            page.wait_for_load_state("load")
            headers = page.eval_on_selector_all("table.leaderboard thead th", "cells => cells.map(c => c.textContent)")
            column = str(headers.index("logit difference") + 1)
            ranked = column_keys(page, column)
            page.click("table.leaderboard thead th:has-text('logit difference')")
            ascending = column_keys(page, column)
            values = [float(v) for v in ranked if v]
            assert [float(v) for v in ascending if v] == sorted(values) and ascending != ranked
            assert all(ascending[:len(values)])  # rows without a value go last
            page.click("table.leaderboard thead th:has-text('logit difference')")
            assert [float(v) for v in column_keys(page, column) if v] == sorted(values, reverse=True)
            widths = page.eval_on_selector_all("img", "images => images.map(i => [i.getAttribute('src'), "
                                                      "i.complete ? i.naturalWidth : 0])")
            assert len(widths) > 5 and all(width > 0 for _, width in widths), widths
            page.screenshot(path=str(tmp_path / "leaderboard.png"), full_page=True)
            page.locator("table.leaderboard a", has_text="seed 1").first.click()
            assert page.text_content("h1").startswith("Record ")
        finally:
            browser.close()
    assert problems == []
    assert all(url.startswith("file://") or url.startswith("data:") for url in requests), requests
    assert (tmp_path / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
