"""Held-out test samples as points: one row per sample (x, y in the stack CRS, label).

The samples table is long (one row per sample and date); `cropseq evaluate --map --truth`
reads CSV points with x, y columns in the map's CRS, one per reference item, so the map is
scored once per held-out sample. Run by the workflow's heldout_points rule.
"""

import sys
from cropseq.atomic import atomic_path
from cropseq.errors import CropseqError
from cropseq.samples import read_samples


def main(table: str, out: str) -> None:
    df = read_samples(table)
    missing = [c for c in ("x", "y") if c not in df.columns]
    if missing:
        raise CropseqError(f"the samples table has no {', '.join(missing)} column(s): cannot place the test points", table)
    keep = [c for c in ("sample_id", "x", "y", "label", "group") if c in df.columns]
    points = df.drop_duplicates("sample_id")[keep]
    with atomic_path(out) as tmp:
        points.to_csv(tmp, index=False)
    print(f"{len(points)} held-out points -> {out}")


if "snakemake" in globals():  # run by Snakemake's script: directive
    with open(snakemake.log[0], "w") as _log:  # noqa: F821
        sys.stdout = sys.stderr = _log
        main(snakemake.input[0], snakemake.output[0])  # noqa: F821
elif __name__ == "__main__":  # by hand: python heldout_points.py TABLE OUT.csv
    main(sys.argv[1], sys.argv[2])
