from compress.cli import run

run()
