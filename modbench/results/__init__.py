"""Results: the run record store, the published figures, and leaderboards built from both."""
