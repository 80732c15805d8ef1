"""Batch verbs of the ``ocsge`` CLI (registered as entry points in pyproject.toml)."""

from __future__ import annotations

import click


@click.command("synth")
def synth() -> None:
    """Generate a synthetic territory (in progress)."""
    raise click.ClickException("ocsge synth is not implemented yet")
