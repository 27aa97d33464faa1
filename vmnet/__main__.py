from vmnet.cli import run

run()
