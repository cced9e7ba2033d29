"""Test doubles that are real servers (HTTP on 127.0.0.1), not mocks."""
