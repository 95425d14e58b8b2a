"""Label sample-design points from a reference raster: the analyst's part, automated.

`cropseq sample-design` writes points with an empty ``reference`` column for a person to
fill from field visits or imagery. On the demo scene the simulated ``truth.tif`` knows every
pixel's class, so this fills the column with the class name under each point. Run by the
workflow's label_points rule, or by hand:

    python label_points.py POINTS.gpkg TRUTH.tif OUT.gpkg
"""

import sys

import numpy as np

from cropseq.atomic import atomic_path
from cropseq.errors import CropseqError
from cropseq.evaluation import raster_class_names


def main(points: str, truth: str, out: str) -> None:
    import geopandas as gpd
    import rasterio

    gdf = gpd.read_file(points)
    names = dict(raster_class_names(truth))
    with rasterio.open(truth) as src:
        if gdf.crs is not None and src.crs is not None and gdf.crs != src.crs:
            gdf = gdf.to_crs(src.crs)
        xy = zip(gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy(), strict=True)
        codes = np.fromiter((v[0] for v in src.sample(xy, indexes=1)), dtype=np.int64, count=len(gdf))
    unknown = sorted(set(codes.tolist()) - set(names))
    if unknown:
        raise CropseqError(f"the reference raster has no class for code(s) {unknown} under some points", truth)
    gdf["reference"] = [names[c] for c in codes]
    with atomic_path(out) as tmp:
        gdf.to_file(tmp, layer="points", driver="GPKG", engine="pyogrio")
    agree = float((gdf["reference"] == gdf["map_class"]).mean()) if len(gdf) else float("nan")
    print(f"{len(gdf)} points labelled from {truth} ({agree:.1%} agree with the map) -> {out}")


if "snakemake" in globals():  # run by Snakemake's script: directive
    with open(snakemake.log[0], "w") as _log:  # noqa: F821
        sys.stdout = sys.stderr = _log
        main(snakemake.input.points, snakemake.input.truth, snakemake.output[0])  # noqa: F821
elif __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
