"""Reading throughput: cropseq's readers beside odc-stac alone, local COGs and over HTTP.

Writes a ``SIZE² x DATES x BANDS`` stack of single-band COGs (uint16, scale 0.0001, fill 0,
512-px tiles, deflate) into a temporary folder, then reads all of it, chunk-wise (a count of
missing pixels, so memory stays flat), in these cases:

- ``manifest``: cropseq's manifest reader, ``layout: single-band`` over the files;
- ``stac``: cropseq's STAC path (``source: stac``) over a static catalogue of the same COGs;
- ``odc-stac``: ``odc.stac.load`` alone on the same items, giving the same product lazily:
  float32 (``dtype="float32"``, which keeps the fill value 0 as 0), the fill value turned into
  NaN and the scale applied with ``da.where(raw == 0, nan, raw * 0.0001)``, chunks of every
  date x 512 x 512 px per band (cropseq's chunk also holds every band: the cube contract);
- the same three over HTTP from the range-capable server of ``tests/_http_server.py`` on
  127.0.0.1 (``manifest-http`` reads per-date VRTs whose sources are ``/vsicurl/`` URLs:
  a ``single-band`` glob cannot be listed over plain HTTP).

Every case computes ``isnan(...).sum()`` chunk-wise, under the same Dask scheduler (threads,
one per CPU core). Each case runs in its own child process (peak RSS is that process's ``ru_maxrss``, imports
included; wall and CPU seconds cover the read only). The machine may be shared: every case
runs ``--repeats`` times, interleaved (case A, B, C, A, B, C), and the best wall time is
reported with the CPU seconds and peak RSS of that run.

Mpx/s = pixels x dates x bands / wall seconds / 1e6.

Usage::

    python benchmarks/read_throughput.py                 # 2048 px, 24 dates, 6 bands
    python benchmarks/read_throughput.py --size 512      # a quick run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
CRS = "EPSG:32633"
ORIGIN = (500000.0, 5200000.0)
CHUNK = 512
CASES = ("manifest", "stac", "odc-stac", "manifest-http", "stac-http", "odc-stac-http")


def _day(k: int) -> dt.datetime:
    return dt.datetime(2023, 3, 1, 10, 0, 31, tzinfo=dt.timezone.utc) + dt.timedelta(days=10 * k)


def write_stack(root: Path, size: int, dates: int) -> None:
    """COGs ``root/cogs/S2_<date>_<band>.tif`` and a static catalogue over them."""
    import rasterio
    from affine import Affine

    tr = Affine(10.0, 0, ORIGIN[0], 0, -10.0, ORIGIN[1])
    yy, xx = np.mgrid[0:size, 0:size]
    base = (1000 + 800 * np.sin(xx / 97.0) * np.cos(yy / 61.0)).astype(np.float32)
    rng = np.random.default_rng(0)
    (root / "cogs").mkdir()
    for k in range(dates):
        for c, band in enumerate(BANDS):
            arr = (base * (1 + 0.1 * c) + 30 * k + rng.integers(0, 200, (size, size))).astype(np.uint16)
            arr[: size // 16, : size // 16] = 0  # a fill-value corner: missing
            with rasterio.open(_cog(root, k, band), "w", driver="COG", width=size, height=size, count=1,
                               dtype="uint16", crs=CRS, transform=tr, nodata=0, compress="DEFLATE",
                               blocksize=CHUNK) as dst:  # fmt: skip
                dst.write(arr, 1)
    _write_catalog(root, size, dates)


def _cog(root: Path, k: int, band: str) -> Path:
    return root / "cogs" / f"S2_{_day(k):%Y%m%d}_{band}.tif"


def _write_catalog(root: Path, size: int, dates: int) -> None:
    import pystac
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterBand, RasterExtension
    from rasterio.warp import transform_bounds, transform_geom
    from shapely.geometry import box, mapping

    extent = box(ORIGIN[0], ORIGIN[1] - size * 10, ORIGIN[0] + size * 10, ORIGIN[1])
    geom = transform_geom(CRS, "EPSG:4326", mapping(extent))
    bbox = list(transform_bounds(CRS, "EPSG:4326", *extent.bounds))
    cat = pystac.Catalog("bench", "read_throughput benchmark")
    for k in range(dates):
        name = f"S2_{_day(k):%Y%m%d}"
        item = pystac.Item(name, geom, bbox, _day(k), {})
        for band in BANDS:
            asset = pystac.Asset(str(_cog(root, k, band)), media_type=pystac.MediaType.COG, roles=["data"])
            item.add_asset(band, asset)
            proj = ProjectionExtension.ext(asset, add_if_missing=True)
            proj.code, proj.transform, proj.shape = CRS, [10.0, 0, ORIGIN[0], 0, -10.0, ORIGIN[1]], [size, size]
            rb = RasterBand.create(nodata=0, data_type="uint16", scale=0.0001, offset=0.0)  # type: ignore[arg-type]
            RasterExtension.ext(asset, add_if_missing=True).bands = [rb]
        cat.add_item(item)
    cat.normalize_hrefs(str(root / "catalog"))
    cat.make_all_asset_hrefs_relative()
    cat.save(pystac.CatalogType.SELF_CONTAINED)  # relative hrefs: read locally or over HTTP


def write_manifests(root: Path, base_url: str, size: int, dates: int) -> None:
    """Manifests of the four cropseq cases (the HTTP ones name ``base_url``)."""
    import yaml

    stac = {"source": "stac", "bands": list(BANDS)}
    (root / "stac.yaml").write_text(yaml.safe_dump({**stac, "catalog": "catalog/catalog.json"}))
    (root / "stac-http.yaml").write_text(yaml.safe_dump({**stac, "catalog": f"{base_url}/catalog/catalog.json"}))
    single = {"layout": "single-band", "files": "cogs/S2_*.tif", "bands": list(BANDS), "scale": 0.0001, "nodata": 0,
              "pattern": r"S2_(?P<date>\d{8})_(?P<band>B\d\d)\.tif"}  # fmt: skip
    (root / "manifest.yaml").write_text(yaml.safe_dump(single))
    vrts = []
    for k in range(dates):
        name = f"S2_{_day(k):%Y%m%d}"
        urls = [f"/vsicurl/{base_url}/cogs/{_cog(root, k, b).name}" for b in BANDS]
        out = root / "vrt" / f"{name}.vrt"
        out.parent.mkdir(exist_ok=True)
        _vrt(out, urls, size)
        vrts.append(f"vrt/{name}.vrt")
    per_date = {"layout": "per-date", "files": vrts, "dates": [f"{_day(k):%Y-%m-%d}" for k in range(dates)],
                "bands": list(BANDS), "scale": 0.0001, "nodata": 0}  # fmt: skip
    (root / "manifest-http.yaml").write_text(yaml.safe_dump(per_date))


def _vrt(out: Path, urls: list[str], size: int) -> None:
    """A band-separate VRT over ``urls`` (single-band uint16 COGs on the benchmark's grid)."""
    from rasterio.crs import CRS as RioCRS

    bands = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{i + 1}"><NoDataValue>0</NoDataValue><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{u}</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>'
        for i, u in enumerate(urls)
    )
    wkt = RioCRS.from_user_input(CRS).to_wkt().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out.write_text(
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{wkt}</SRS>'
        f"<GeoTransform>{ORIGIN[0]}, 10, 0, {ORIGIN[1]}, 0, -10</GeoTransform>{bands}</VRTDataset>"
    )


# ----------------------------------------------------------------------------- one case (child process)


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_case(case: str, root: Path, base_url: str) -> dict[str, Any]:
    """Read the whole stack once in this process; wall/CPU seconds of the read, peak RSS."""
    import resource

    import dask
    import dask.array as da

    from cropseq.raster_access import quiet_rasterio

    with quiet_rasterio(), dask.config.set(scheduler="threads", num_workers=os.cpu_count()):
        if case.startswith("odc-stac"):
            lazy = _odc_stac_alone(root, base_url if case.endswith("http") else None)
        else:
            from cropseq.io import open_stack

            cube = open_stack(root / f"{case}.yaml", chunks=CHUNK)
            lazy = [da.isnan(cube.data).sum()]
        t0, c0 = time.perf_counter(), _cpu()
        missing = int(sum(dask.compute(*lazy)))
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"case": case, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "missing": missing}  # fmt: skip


def _odc_stac_alone(root: Path, base_url: str | None) -> list[Any]:
    import dask.array as da
    import odc.stac
    import pystac

    href = f"{base_url}/catalog/catalog.json" if base_url else str(root / "catalog" / "catalog.json")
    items = list(pystac.Catalog.from_file(href).get_items(recursive=True))
    chunks: dict[str, int | Literal["auto"]] = {"time": -1, "x": CHUNK, "y": CHUNK}
    ds = odc.stac.load(items, bands=list(BANDS), chunks=chunks, groupby="solar_day", dtype="float32")
    # The product cropseq delivers: fill value 0 -> NaN, scale 0.0001 applied (lazily, per chunk).
    cube = [da.where(ds[b].data == 0, np.float32(np.nan), ds[b].data * np.float32(1e-4)) for b in BANDS]
    return [da.isnan(c).sum() for c in cube]


# ----------------------------------------------------------------------------- driver


def main() -> None:
    """Write the stack, serve it on 127.0.0.1, run every case ``--repeats`` times interleaved."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="pixels per side (default 2048)")
    ap.add_argument("--dates", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2, help="runs per case, interleaved; the best is reported")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--_case", help=argparse.SUPPRESS)
    ap.add_argument("--_root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--_base", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._case:  # a child: one case
        print(json.dumps(run_case(args._case, args._root, args._base)), flush=True)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _http_server import serve

    cases = [c for c in args.cases.split(",") if c]
    load = [os.getloadavg()[0]]  # a shared machine's wall times are only comparable at a similar load
    with tempfile.TemporaryDirectory(prefix="cropseq-read-") as tmp, serve(tmp) as base:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_stack(root, args.size, args.dates)
        write_manifests(root, str(base), args.size, args.dates)
        print(f"wrote {args.size}² x {args.dates} dates x {len(BANDS)} bands in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in cases}
        for rep in range(args.repeats):
            for case in cases:
                cmd = [sys.executable, __file__, "--_case", case, "--_root", str(root), "--_base", str(base)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"case {case} failed:\n{out.stderr[-3000:]}")
                runs[case].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"rep {rep + 1} {case}: {runs[case][-1]['wall_s']:.2f} s", file=sys.stderr)
    load.append(os.getloadavg()[0])
    _report(runs, args.size, args.dates, args.repeats, args.json, load)


def _report(
    runs: dict[str, list[dict[str, Any]]], size: int, dates: int, repeats: int, path: Path | None, load: list[float]
) -> None:
    mpx = size * size * dates * len(BANDS) / 1e6
    best = {c: min(r, key=lambda x: x["wall_s"]) for c, r in runs.items()}
    print(f"\n{size}² px x {dates} dates x {len(BANDS)} bands = {mpx:.1f} Mpx; best of {repeats} interleaved runs; "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f} before, {load[1]:.1f} after\n")  # fmt: skip
    print("| case | wall s | Mpx/s | CPU s | peak RSS MB | vs odc-stac alone |")
    print("|---|---|---|---|---|---|")
    for c, b in best.items():
        ref = best.get("odc-stac-http" if c.endswith("http") else "odc-stac")
        rel = f"{ref['wall_s'] / b['wall_s']:.2f}x" if ref else "–"
        print(f"| {c} | {b['wall_s']:.2f} | {mpx / b['wall_s']:.1f} | {b['cpu_s']:.2f} | {b['peak_rss_mb']:.0f} | {rel} |")
    missing = {c: b["missing"] for c, b in best.items()}
    print(f"\nmissing values counted (same data read): {missing}")
    if path is not None:
        path.write_text(json.dumps({"size": size, "dates": dates, "bands": len(BANDS), "load": load, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
