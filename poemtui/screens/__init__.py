"""Screens of the workbench, one per module (each with its .tcss next to it)."""
