"""Build the static leaderboard site: ``index.html``, one page per task, one page (and JSON) per record, the
figures and the stylesheet and script beside them. No server and no network: every asset is a file of the
site. The site is built in a temporary folder beside its destination and then put in its place, so a build
that fails leaves the previous site whole."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from markupsafe import Markup, escape

from modbench.errors import UserError
from modbench.files import atomic_write, write_text
from modbench.results.record import ResultRecord
from modbench.results.store import ResultStore
from modbench.site.figures import FigureMaker
from modbench.site.pages import TaskPage, record_page, task_page

MARKER = ".modbench-site"  # a folder holding it is a site of ours, which a new build may replace


@dataclass(frozen=True)
class SiteSummary:
    index: Path
    tasks: int
    records: int
    figures: int
    unavailable: int  # figures that could not be made (each said so on its page)


def check_site_dir(out_dir: Path) -> None:
    """A site replaces its folder as a whole: refuse a file, or a folder holding anything but a site of ours."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"site folder {out_dir} is a file")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
        raise UserError(f"site folder {out_dir} is not empty and holds no modbench site; choose a new or empty folder")


def build_site(source: ResultStore | Iterable[ResultRecord], out_dir: Path, tasks: Sequence[str] | None = None,
               figures: bool = True) -> SiteSummary:
    """The site of every task with records in ``source`` (or of ``tasks``), written to ``out_dir``.
    ``figures``: regenerate each row's figures from its model checkpoint and details (False: notes instead)."""
    out_dir = Path(out_dir)
    check_site_dir(out_dir)
    records = source.records() if isinstance(source, ResultStore) else list(source)
    chosen = list(dict.fromkeys(tasks)) if tasks else _task_order({r.task for r in records})
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as error:
        raise UserError(f"cannot write site folder {out_dir}: {error.strerror or error}") from None
    try:
        summary = _write(records, chosen, staging, figures)
        os.chmod(staging, 0o755)  # mkdtemp's folder is private; a site is for reading
        _replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SiteSummary(out_dir / "index.html", *summary)


def _task_order(tasks: set[str]) -> list[str]:
    """Registered tasks in registration order, then any others (records of tasks no longer registered)."""
    from modbench.registries import TASKS

    registered = [key for key in TASKS.keys() if key in tasks]
    return registered + sorted(tasks - set(registered))


def _write(records: list[ResultRecord], tasks: list[str], root: Path, figures: bool) -> tuple[int, int, int, int]:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    from modbench.provenance import git_commit, versions

    env = Environment(loader=PackageLoader("modbench.site", "templates"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["code_spans"] = code_spans
    maker = FigureMaker(root) if figures else None
    pages = [task_page(records, task, maker) for task in tasks]
    shown = {r.config_hash: r for r in records if r.task in tasks}
    common = {"pages": pages, "built": {"version": versions()["modbench"], "commit": git_commit(),
                                        "records": len(shown)}}
    _render(env, "index.html", root / "index.html", common | {"title": "modbench leaderboards", "root": ""})
    for page in pages:
        _render(env, "task.html", root / page.href, common | {"title": f"{page.task} leaderboard", "root": "",
                                                              "page": page})
    for record in shown.values():
        _write_record(env, record, root, common)
    static = resources.files("modbench.site").joinpath("static")
    for item in static.iterdir():
        atomic_write(root / "static" / item.name, lambda handle, item=item: handle.write(item.read_bytes()))
    write_text(root / MARKER, "A modbench leaderboard site: `modbench leaderboard site` replaces this folder as a "
                              "whole.\n")
    made, missing = _count_figures(pages)
    return len(pages), len(shown), made, missing


def code_spans(text: str) -> Markup:
    """Footnotes are written for markdown: their `marks` become <code> (everything else escaped)."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _write_record(env, record: ResultRecord, root: Path, common: dict) -> None:  # noqa: ANN001
    """A record's page (provenance first, then its metrics and config) and the record itself as JSON."""
    plain = record.to_dict()
    provenance = record.provenance
    facts = [("config hash", record.config_hash), ("cell", record.cell), ("record id", record.id or ""),
             ("created", record.created or ""), ("status", record.status + (f": {record.failure}" if record.failure else "")),
             ("data source", record.dataset), ("data note", provenance.get("data_note", "")),
             ("seeds (train, pair, bootstrap)", f"{record.train_seed}, {record.pair_seed}, {record.boot_seed}"),
             ("git commit", provenance.get("git_commit", "")), ("device", provenance.get("device", "")),
             ("training device", provenance.get("train_device", "")),
             ("versions", ", ".join(f"{k} {v}" for k, v in provenance.get("versions", {}).items())),
             ("model checkpoint", provenance.get("checkpoint", ""))]
    rest = {key: plain[key] for key in ("costs", "definitions", "sparsity_per_wire", "circuit_size", "details")}
    page = root / record_page(record)
    _render(env, "record.html", page, common | {"title": f"record {record.config_hash}", "root": "../",
                                                "record": record, "facts": facts,
                                                "config": json.dumps(record.config, indent=2),
                                                "rest": json.dumps(rest, indent=2, default=str)})
    write_text(page.with_suffix(".json"), json.dumps(plain, indent=2, default=str) + "\n")


def _render(env, template: str, path: Path, context: dict) -> None:  # noqa: ANN001
    write_text(path, env.get_template(template).render(**context))


def _count_figures(pages: list[TaskPage]) -> tuple[int, int]:
    shown = [figure for page in pages for part in page.sections
             for row in part.rows + part.failed for figure in row.figures]
    shown += [part.scatter for page in pages for part in page.sections if part.scatter is not None]
    made = {figure.path for figure in shown if figure.path}
    return len(made), sum(figure.path is None for figure in shown)


def _replace(staging: Path, out_dir: Path) -> None:
    """Put the new site in place: the old one (a site of ours, checked before) is moved aside, then removed."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
    os.replace(out_dir, old / "site")
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)
