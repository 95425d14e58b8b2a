from cropseq.cli import run

run()
