"""``python -m cropseq``: the same CLI as the ``cropseq`` command."""

from cropseq.cli import run

__all__: list[str] = []

run()
