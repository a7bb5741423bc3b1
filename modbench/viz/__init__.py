"""Figures. Kept apart from the core: nothing here is needed to compute a result."""
