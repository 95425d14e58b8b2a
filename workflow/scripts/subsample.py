"""Cap the number of samples per group (field) of a samples table, seeded.

Polygon labels give one sample per pixel: a 512 x 512 px demo scene has ~120,000 labelled
pixels in ~200 fields, far more (and far more redundant: neighbouring pixels of a field are
nearly identical) than a CPU needs to train on. Keeping at most N random pixels of each
field (group) keeps every field and every class, and the split stays grouped.
Run by the workflow's samples rule when samples.max_per_group is set.
"""

import sys

import numpy as np

from cropseq.errors import CropseqError
from cropseq.samples import read_samples, write_samples


def subsample(table: str, out: str, max_per_group: int, seed: int = 0) -> None:
    df = read_samples(table)
    if "group" not in df.columns:
        raise CropseqError("the samples table has no group column to cap samples per group", table)
    ids = df.drop_duplicates("sample_id")[["sample_id", "group"]]
    rng = np.random.default_rng(seed)
    keep = []
    for _, g in ids.groupby("group", sort=True):
        sid = g["sample_id"].to_numpy()
        keep.append(sid if len(sid) <= max_per_group else rng.choice(sid, size=max_per_group, replace=False))
    kept = np.sort(np.concatenate(keep))
    out_df = df[df["sample_id"].isin(kept)]
    write_samples(out_df, out)
    print(f"{len(kept)} of {len(ids)} samples kept (at most {max_per_group} per group, "
          f"{ids['group'].nunique()} groups) -> {out}")


if "snakemake" in globals():  # run by Snakemake's script: directive
    with open(snakemake.log[0], "w") as _log:  # noqa: F821
        sys.stdout = sys.stderr = _log
        subsample(snakemake.input[0], snakemake.output[0],  # noqa: F821
                  int(snakemake.params.max_per_group), int(snakemake.params.seed))  # noqa: F821
elif __name__ == "__main__":  # by hand: python subsample.py TABLE OUT N [SEED]
    subsample(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
