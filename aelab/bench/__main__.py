from aelab.bench.cli import run

run()
