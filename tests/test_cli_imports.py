"""The CLI starts fast: importing it loads no heavy library (click's test_imports idea)."""

import subprocess
import sys

HEAVY = ("torch", "onnx", "onnxruntime", "qonnx", "nir", "snntorch", "brevitas", "numba", "matplotlib", "tonic")


def test_cli_import_is_light():
    code = f"import sys, qsnn_deploy.app.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"heavy modules imported by the CLI module: {out}"


def test_help_lists_every_command(runner):
    from qsnn_deploy.app.cli import cli

    res = runner.invoke(cli, ["--help"])
    assert res.exit_code == 0
    for command in ("train", "simulate", "parity", "export", "targets", "presets", "demo"):
        assert command in res.output
