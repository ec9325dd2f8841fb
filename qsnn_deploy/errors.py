"""Error types of qsnn-deploy and the CLI exit status each one maps to.

Library code raises these; the CLI turns them into a one-line message and the exit
status below (documented in docs/cli.md). Anything else escaping the library is a bug.
"""

from __future__ import annotations


class QsnnError(Exception):
    """Base of all expected failures: bad input, unsupported models, target limits."""

    #: process exit status the CLI uses for this kind of failure
    exit_code: int = 1


class CheckpointError(QsnnError):
    """A checkpoint is missing, corrupt, untrusted or not one we can deploy."""

    exit_code = 3


class DataError(QsnnError):
    """A data set is missing or malformed."""

    exit_code = 4


class GraphError(QsnnError, ValueError):
    """An IR graph or graph JSON document is malformed or inconsistent."""

    exit_code = 5


class TargetError(QsnnError):
    """A model does not fit a target: a rule failed or the state width overflowed."""

    exit_code = 6


class ExportError(QsnnError):
    """An exporter cannot express the graph, or its consumer rejects the output."""

    exit_code = 7


class OutputExistsError(QsnnError):
    """An output already exists and overwriting it would lose work (use --force)."""

    exit_code = 8
