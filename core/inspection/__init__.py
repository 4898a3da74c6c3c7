"""Looking inside the LSTM (Part 1 made visible): per-step gates and cell states (trace), the units that
track a poem's structure (units), and one poem's surprisal, predictions, gates and ‖∂L/∂h_t‖ (poem)."""

from core.inspection.poem import Inspector

__all__ = ["Inspector"]
