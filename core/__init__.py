"""poemtui's engine: corpus, a hand-written LSTM language model, training, checkpoints and sampling.

Library modules here never import textual or rich (tests/test_import_hygiene.py enforces it); command-line
entry points import rich lazily, inside their main functions.
"""

__version__ = "0.1.0"
