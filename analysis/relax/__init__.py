"""Differentiable pieces: cuts, histograms, HistFactory likelihood, Fisher information."""
