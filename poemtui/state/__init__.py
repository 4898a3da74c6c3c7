"""What the workbench knows that is not a widget: the training child process and its RunState, the sequence
of an experiment's runs, the checkpoint catalog, the training form's fields, a poem's tones.

Plain Python over the engine (core): no module here imports textual or rich, so each can be used and tested
without a screen (tests/test_tui.py checks it). The app and its screens draw this state; they own none of it.
"""
