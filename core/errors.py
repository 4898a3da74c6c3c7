"""Errors a user can fix: the command-line entry points print them as one line and exit with status 2."""


class PoemError(Exception):
    """A problem with the user's input (a path, a file, a flag, a seed): one clear line, no traceback."""


class CorpusError(PoemError):
    """The corpus is missing, unreadable, malformed or empty after filtering."""


class CheckpointError(PoemError):
    """A checkpoint file that cannot be used: corrupt, hostile, foreign, or not writable."""


class SeedError(PoemError):
    """Seed characters the model cannot start from (outside its vocabulary)."""
