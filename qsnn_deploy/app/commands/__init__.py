"""One module per ``qsnn-deploy`` command; :data:`qsnn_deploy.app.cli.COMMANDS` lists them."""
