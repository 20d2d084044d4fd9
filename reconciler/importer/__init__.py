"""``dsr import``: write a dsr spec for what already runs.

::

    compose files ─read─▶ ComposeProject (merged, located)   importer/compose_read.py
    ComposeProject ─convert─▶ Imported (spec + notes)         importer/compose.py
    engine inspect JSON ─convert─▶ Imported                   importer/engine.py
    Imported ─write─▶ YAML with the notes as comments          importer/write.py

The names written are the names the objects have on the engine, each with ``adopt: true``,
so that applying the spec where they run takes them over without moving a byte. What
cannot be carried over is never dropped silently: each is a ``Note`` (file, line, path,
why), printed on stderr and written as a comment.
"""

from reconciler.importer.model import Imported, Note

__all__ = ["Imported", "Note"]
