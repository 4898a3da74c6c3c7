"""poemtui: the Textual workbench over the core engine (train, watch, browse checkpoints, write poems)."""
