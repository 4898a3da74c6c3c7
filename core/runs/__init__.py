"""Run folders and what they hold: checkpoint files (format, atomic writes, validation), the `best` and
`last` pointers, retention, and the metrics log."""
