"""`rapport models ...`: Propensity models: train, list, show."""

from __future__ import annotations

import typer

app = typer.Typer(help="Propensity models: train, list, show.", no_args_is_help=True)
