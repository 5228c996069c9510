"""Data in: sources, the split, standardization, the prepared files, and the checks that
refuse data no model can learn from (Great Expectations, degenerate labels, learnability)."""
