import os

os.environ.setdefault("QSNN_DEPLOY_NO_REEXEC", "1")

import pytest


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()
