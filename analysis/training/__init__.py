"""Models, losses and training loops."""
