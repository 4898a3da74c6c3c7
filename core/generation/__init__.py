"""Writing poems with a trained model: sampling settings, the form state machine, the sampler, and the
quality figures of sampled poems. `python -m core.generate` is the command."""
