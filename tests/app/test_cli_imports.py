"""The CLI starts fast: importing it loads no heavy library (click's test_imports idea)."""

import subprocess
import sys

HEAVY = ("torch", "onnx", "onnxruntime", "qonnx", "nir", "snntorch", "brevitas", "numba", "matplotlib", "tonic")


def test_cli_import_is_light():
    code = f"import sys, qsnn_deploy.app.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"heavy modules imported by the CLI module: {out}"


def test_command_table_loads_every_command():
    import click

    from qsnn_deploy.app.cli import COMMANDS, cli

    ctx = click.Context(cli)
    assert {"train", "simulate", "parity", "export", "targets", "presets", "demo"} <= set(COMMANDS)
    assert cli.list_commands(ctx) == sorted(COMMANDS)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name, name
    assert cli.get_command(ctx, "no-such-command") is None


def test_choices_come_from_the_registries():
    import click

    from qsnn_deploy.app.cli import cli
    from qsnn_deploy.data.loaders import DATASET_NAMES
    from qsnn_deploy.exporters import FORMATS
    from qsnn_deploy.sim import BACKENDS
    from qsnn_deploy.training.config import SCHEDULES

    ctx = click.Context(cli)

    def choices(command: str, option: str) -> list[str]:
        (param,) = [p for p in cli.get_command(ctx, command).params if p.name == option]
        return list(param.type.choices)

    assert choices("export", "fmt") == list(FORMATS)
    assert choices("simulate", "backend") == list(BACKENDS)
    assert choices("parity", "data") == list(DATASET_NAMES)
    assert choices("train", "schedule") == list(SCHEDULES)
