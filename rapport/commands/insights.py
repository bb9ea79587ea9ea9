"""`rapport insights ...`: KPIs per segment, journey and message; recommendations."""

from __future__ import annotations

import typer

app = typer.Typer(help="KPIs per segment, journey and message; recommendations.", no_args_is_help=True)
