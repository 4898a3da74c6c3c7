"""`python -m core.inspect CKPT POEM [--json]` (core/inspect/__main__.py): one poem inside an LSTM checkpoint.
The library is core.inspection; this package only holds the command (a package, so that core/ keeps few
top-level modules)."""
