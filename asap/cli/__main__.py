from asap.cli.main import run

run()
