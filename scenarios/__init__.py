"""Scenario data (demo chapters, eval campaigns) as YAML, and the models that validate it."""
