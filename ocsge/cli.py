"""The ``ocsge`` command: one verb per pipeline step, plus ``demo`` and ``serve``.

Verbs come from the ``ocsge.commands`` entry-point group: each role (batch, catalogue, services)
contributes its own, so that this module imports nothing of ours and a container without an extra
still answers ``--help`` (a verb whose extra is missing says which one to install).
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from importlib.metadata import entry_points

import click
from rich.markup import escape

from ocsge import __version__
from ocsge.errors import OcsgeError
from ocsge.progress import console

ENTRY_POINT_GROUP = "ocsge.commands"


def _plugins() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


class VerbGroup(click.Group):
    """A click group whose verbs are loaded from entry points when first used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        ep = _plugins().get(cmd_name)
        if ep is None:
            return None
        try:
            return ep.load()  # type: ignore[attr-defined]
        except (ImportError, AttributeError) as exc:  # extra not installed, or verb not built yet
            return _unavailable(cmd_name, exc)


def _unavailable(name: str, exc: Exception) -> click.Command:
    @click.command(name, help=f"(unavailable: {exc})", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise OcsgeError(
            f"verb {name!r} cannot run in this installation ({exc}); install the project with the "
            "extra that provides it, e.g. pip install -e '.[batch,serve]'"
        )

    return command


DEBUG_ENV = "OCSGE_DEBUG"


@click.group(cls=VerbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ocsge")
@click.option("--debug", is_flag=True,
              help=f"Show the traceback of an error (anywhere on the line, or {DEBUG_ENV}=1).")
def cli(debug: bool) -> None:
    """OCS GE cloud: produce, derive, catalogue and serve large-scale land-cover maps."""


@cli.command("departements")
def list_departements() -> None:
    """List the départements with their CRS."""
    from ocsge.territory import all_departements

    for dep in all_departements():
        click.echo(f"{dep.code:>3}  {dep.crs:<10} {dep.name}")


@cli.command("nomenclature")
@click.argument("kind", type=click.Choice(["couverture", "usage"]), default="couverture")
def show_nomenclature(kind: str) -> None:
    """Print the couverture or usage codes with labels, colours and raster values."""
    from ocsge.nomenclature import TABLES, Kind

    for entry in TABLES[Kind(kind)].values():
        value = "" if entry.raster_value is None else str(entry.raster_value)
        click.echo(f"{entry.code:<10} {value:>3} {entry.colour or '':<8} {entry.label}")


def run_verb(name: str, args: list[str]) -> None:
    """Run another verb as the user would (``ocsge demo`` chains steps this way)."""
    command = cli.get_command(click.Context(cli), name)
    if command is None:
        raise OcsgeError(f"unknown verb {name!r}")
    command.main(args=args, standalone_mode=False)


def _debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """``--debug`` taken out of the command line wherever it is (before a ``--``), so that
    ``ocsge products -d 33 --debug`` works as ``ocsge --debug products -d 33``."""
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    args = [a for i, a in enumerate(argv) if not (i < end and a == "--debug")]
    return args, debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv: list[str] | None = None) -> None:
    """The ``ocsge`` command. An error says what failed and where, in one line (exit 2 for the errors we
    raise on purpose, 1 for anything unexpected), without a traceback unless ``--debug``."""
    # rasterio 1.4 warns on the in-memory rasters its own rasterize() creates: noise for our users
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    args, debug = _debug_flag(list(sys.argv[1:] if argv is None else argv))
    try:
        cli.main(args=args, standalone_mode=False)
    except click.exceptions.Abort:
        console.print("[red]aborted[/]")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OcsgeError as exc:
        if debug:
            console.print(escape("".join(traceback.format_exception(exc))), end="")
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if debug:
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}{escape(': ' + detail) if detail else ''}"
                      " (rerun with --debug for the traceback)")
        sys.exit(1)


if __name__ == "__main__":
    main()
