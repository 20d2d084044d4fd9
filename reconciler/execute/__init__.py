"""The executors: one function per payload class of ``plan.payloads``, each one engine or
backup call, made exactly as the plan says (``core``: a change run operation by operation).

Importing this package registers every executor."""

from __future__ import annotations

from reconciler.execute import containers, images, records, volumes
from reconciler.execute.core import EXECUTORS, Executors, Run

__all__ = ["EXECUTORS", "Executors", "Run", "containers", "images", "records", "volumes"]
