"""`rapport content ...`: Content blocks and placements: decide for a profile."""

from __future__ import annotations

import typer

app = typer.Typer(help="Content blocks and placements: decide for a profile.", no_args_is_help=True)
