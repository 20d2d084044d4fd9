"""Shared by every test: unit tests (tests/unit/) and engine tests (tests/engine/).

Keep this file small. Fixtures that need a Docker engine live in tests/engine/conftest.py,
so the unit tests never import docker or wait for an engine.
"""
