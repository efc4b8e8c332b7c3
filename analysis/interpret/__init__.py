"""Interpretation of trained networks (Taylor coefficients)."""
