from cropseq.cli import run

__all__: list[str] = []

run()
