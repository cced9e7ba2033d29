"""Subjects: one package per kind of system the operator can watch, plus the shared vocabulary (base)."""
