"""Data loaders. Every split records its source so results from different data never mix."""
