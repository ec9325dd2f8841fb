"""``python -m qsnn_deploy``: the command line (same as ``qsnn-deploy``)."""

from qsnn_deploy.app.cli import main

main()
