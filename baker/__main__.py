from baker.cli import run

run()
