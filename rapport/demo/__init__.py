"""The demo shop: generated customers and months of events, loaded through the real ingestion path."""

from __future__ import annotations

from rapport.demo.run import DemoOptions, DemoResult, run_demo

__all__ = ["DemoOptions", "DemoResult", "run_demo"]
