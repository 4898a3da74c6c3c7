"""Messages of the workbench (one module, so the flow of events can be read in one place)."""

from __future__ import annotations

from textual.message import Message


class TrainingChanged(Message):
    """The run's state changed: `kind` is the trainer's event (batch, eval, checkpoint, done, error),
    or "stopping" / "exit" for the process itself."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def can_replace(self, message: Message) -> bool:
        # Tens of batch events a second: a newer one makes a queued one pointless (the state holds it all).
        return self.kind == "batch" and isinstance(message, TrainingChanged) and message.kind == "batch"


class PoemsGrew(Message):
    """The poems being sampled gained a character (posted from the sampling thread)."""

    def __init__(self, generation: int, texts: list[str]) -> None:
        super().__init__()
        self.generation = generation
        self.texts = texts

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PoemsGrew) and message.generation == self.generation
