"""Demo mode: chapters of narration played over the real console on a fresh lab (see director.py)."""
