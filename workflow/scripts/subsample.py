"""Cap the number of samples per group (field) of a samples table, seeded.

Run by the workflow's samples rule when samples.max_per_group is set; the work is
:func:`cropseq.samples.cap_per_group` (also ``cropseq samples --max-per-group``).
"""

import sys

from cropseq.samples import cap_per_group, read_samples, read_samples_classes, write_samples


def subsample(table: str, out: str, max_per_group: int, seed: int = 0) -> None:
    """Write at most ``max_per_group`` samples of each group of ``table`` to ``out``, seeded;
    the class table stored with ``table`` goes with them."""
    df = read_samples(table)
    kept = cap_per_group(df, max_per_group, seed=seed, where=table)
    write_samples(kept, out, classes=read_samples_classes(table))
    print(f"{kept['sample_id'].nunique()} of {df['sample_id'].nunique()} samples kept (at most {max_per_group} "
          f"per group, {df['group'].nunique()} groups) -> {out}")


if "snakemake" in globals():  # run by Snakemake's script: directive
    with open(snakemake.log[0], "w") as _log:  # noqa: F821
        sys.stdout = sys.stderr = _log
        subsample(snakemake.input[0], snakemake.output[0],  # noqa: F821
                  int(snakemake.params.max_per_group), int(snakemake.params.seed))  # noqa: F821
elif __name__ == "__main__":  # by hand: python subsample.py TABLE OUT N [SEED]
    subsample(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
