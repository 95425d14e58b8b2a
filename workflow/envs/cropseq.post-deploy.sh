#!/usr/bin/env bash
# Install cropseq from the checkout into the freshly made conda environment.
# Snakemake runs this in the working directory; set CROPSEQ_SOURCE when that is not the
# repository root (e.g. snakemake --directory elsewhere).
set -euo pipefail
src="${CROPSEQ_SOURCE:-.}"
if [ ! -f "$src/pyproject.toml" ]; then
    echo "cropseq post-deploy: no pyproject.toml in '$src'; set CROPSEQ_SOURCE to the cropseq checkout" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation "$src"
