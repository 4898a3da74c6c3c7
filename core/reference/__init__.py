"""Part 1 in NumPy: the language model with the hand-derived backward of docs/lstm-derivatives.md, and the
optimizers it trains with (`--backend numpy`); `python -m core.gradcheck` proves it against torch."""
