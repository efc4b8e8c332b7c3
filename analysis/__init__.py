"""diffana's analysis library: events, skim, differentiable pieces, training and inference.

Nothing here imports law or luigi; every function can be used and tested on its own.
"""

__all__: list[str] = []
