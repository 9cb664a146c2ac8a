"""The command lines: ``er-grid`` (``main``: run, resume, status, query, report; ``data``: data
fetch and check), the job files' ``job_main`` (``job``) and what they share (``common``)."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
