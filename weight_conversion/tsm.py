"""Placeholder until this layout lands (being written now)."""
LAYOUTS = ()
