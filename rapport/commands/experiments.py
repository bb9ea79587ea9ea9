"""`rapport experiments ...`: Experiments: results with intervals and a chart."""

from __future__ import annotations

import typer

app = typer.Typer(help="Experiments: results with intervals and a chart.", no_args_is_help=True)
