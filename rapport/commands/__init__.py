"""Command groups of the ``rapport`` CLI beyond the core verbs, one module per area (each defines ``app``)."""
