"""``python -m reconciler`` is ``dsr``."""

from reconciler.cli import main

main()
