"""Training: settings, the trainer's loop, how a step is computed (torch or NumPy), perplexity on a split,
events, several processes, and memory kept between steps. `python -m core.train` is the command."""
