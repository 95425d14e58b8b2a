"""cropseq: crop maps from multitemporal satellite imagery.

The Python API behind both the ``cropseq`` CLI and the Snakemake workflow.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cropseq")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from cropseq.errors import CropseqError

__all__ = ["CropseqError", "__version__"]
