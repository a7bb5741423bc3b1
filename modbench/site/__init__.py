"""The static leaderboard site (``modbench leaderboard site OUT_DIR``): every task's leaderboard as a sortable
table beside the published rows, with each row's figures and the records behind it, as plain files."""

from modbench.site.build import SiteSummary, build_site, check_site_dir

__all__ = ["SiteSummary", "build_site", "check_site_dir"]
