"""Regenerate the committed leaderboard site (leaderboards/site/) from a results database: every task with
records, each row's figures redrawn from its model checkpoint (so run it on the machine that trained them).

    python scripts/build_site.py [--results $MODBENCH_HOME/results.sqlite] [--out leaderboards/site] [--no-figures]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modbench.errors import UserError
from modbench.paths import modbench_home
from modbench.results.store import ResultStore
from modbench.site import build_site

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=None, help="[default: $MODBENCH_HOME/results.sqlite]")
    parser.add_argument("--out", type=Path, default=ROOT / "leaderboards" / "site")
    parser.add_argument("--task", action="append", default=None, help="only this task (repeat for several)")
    parser.add_argument("--no-figures", action="store_true", help="notes instead of figures (no checkpoints needed)")
    args = parser.parse_args()
    store = ResultStore(args.results or modbench_home() / "results.sqlite")
    try:
        summary = build_site(store.records(must_exist=True), args.out, tasks=args.task, figures=not args.no_figures)
    except UserError as error:
        raise SystemExit(f"build_site: error: {error}") from None
    print(f"wrote {summary.index}: {summary.tasks} task pages, {summary.records} records, {summary.figures} figures"
          f" ({summary.unavailable} unavailable, each said so on its page)")


if __name__ == "__main__":
    main()
