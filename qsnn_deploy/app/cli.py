"""The ``qsnn-deploy`` command line: thin wrappers around library functions.

Each command lives in its own module of :mod:`qsnn_deploy.app.commands`, registered in
:data:`COMMANDS` and imported only when it runs or ``--help`` lists it. Heavy libraries
(torch, onnx, ...) are imported inside the commands, so ``--help`` is fast. Library errors
(:class:`qsnn_deploy.errors.QsnnError`) become a one-line ``Error: ...`` on stderr and the
exit status of their class (see docs/cli.md); no traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from qsnn_deploy.errors import QsnnError

#: command name -> "module:attribute" of its click command, under qsnn_deploy.app.commands
COMMANDS: dict[str, str] = {
    "train": "train:train",
    "presets": "listing:presets",
    "targets": "listing:targets",
    "simulate": "simulate:simulate",
    "parity": "parity:parity",
    "export": "export:export",
    "sweep": "sweep:sweep",
    "demo": "demo:demo",
    "tune": "tune:tune",
}


class _Group(click.Group):
    """Loads commands from :data:`COMMANDS` on demand and turns library errors into exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return super().get_command(ctx, name)
        module_name, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(f"qsnn_deploy.app.commands.{module_name}"), attribute)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QsnnError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group)
@click.version_option(package_name="qsnn-deploy")
def cli() -> None:
    """Train, freeze, export, simulate and check quantized spiking neural networks."""


def main() -> None:
    """Console entry point."""
    from qsnn_deploy.app.perf import reexec_with_allocator_env

    reexec_with_allocator_env("qsnn_deploy.app.cli", sys.argv[1:])
    cli(prog_name="qsnn-deploy")


if __name__ == "__main__":
    main()
