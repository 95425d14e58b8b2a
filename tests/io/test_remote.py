"""Remote inputs (issue 13 item 6): manifests, rasters and labels behind URLs.

Every test serves files it wrote from a range-capable HTTP server on 127.0.0.1
(``tests/_http_server.py``); nothing else on the network is used.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import yaml
from _data_fixtures import assert_user_error, run_cli, write_grid_points, write_stack
from _http_server import serve


def _closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inspect_json(stack: str | Path) -> dict:
    res = run_cli(["inspect", "--json", stack])
    assert res.rc == 0, res
    return json.loads(res.out)


def test_inspect_and_open_stack_from_a_manifest_url(tmp_path: Path) -> None:
    """``cropseq inspect http://…/stack.yaml``: relative rasters, masks and the dates file are
    fetched through the URL, and the cube equals the local read."""
    from cropseq.io import open_stack

    stack, expected = write_stack(tmp_path / "s", "per-band", masks=True, nodata=-9999.0)
    with serve(tmp_path) as base:
        url = f"{base}/s/stack.yaml"
        remote_summary = _inspect_json(url)
        cube = open_stack(url, chunks=4)  # several chunks: windowed range reads
        values = cube.values
        assert any(r.startswith("/s/red.tif") for r in base.requests)
    local_summary = _inspect_json(stack)
    assert remote_summary["source"] == url
    for key in ("dates", "bands", "crs", "bounds", "shape", "missing_fraction"):
        assert remote_summary[key] == local_summary[key], key
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(values, open_stack(stack).values)


def test_local_manifest_naming_raster_urls(tmp_path: Path) -> None:
    """A local manifest whose files are full URLs (and ``/vsicurl/`` paths): read, not mangled."""
    from cropseq.io import open_stack

    _, expected = write_stack(tmp_path / "served", "per-date", n_dates=3, masks=True)
    names = sorted(p.name for p in (tmp_path / "served").glob("S2_*.tif"))
    masks = sorted(p.name for p in (tmp_path / "served").glob("MASK_*.tif"))
    with serve(tmp_path / "served") as base:
        manifest = {
            "layout": "per-date", "bands": ["red", "nir"], "date_pattern": r"S2_(\d{8})",
            "files": [f"{base}/{n}" for n in names[:2]] + [f"/vsicurl/{base}/{names[2]}"],
            "masks": [f"{base}/{n}" for n in masks],
        }  # fmt: skip
        local = tmp_path / "stack.yaml"
        local.write_text(yaml.safe_dump(manifest))
        cube = open_stack(local)
        values = cube.values
    np.testing.assert_array_equal(values, expected)


def test_http_glob_is_refused_in_one_line(tmp_path: Path) -> None:
    """A folder behind HTTP cannot be listed: a glob gets one line saying so."""
    write_stack(tmp_path / "s", "per-date", n_dates=2)  # files: "S2_*.tif"
    with serve(tmp_path) as base:
        res = run_cli(["inspect", f"{base}/s/stack.yaml"])
    assert_user_error(res, "S2_*.tif", "cannot be listed", f"{base}/s/")


def test_missing_manifest_url_is_one_line_with_the_status(tmp_path: Path) -> None:
    with serve(tmp_path) as base:
        res = run_cli(["inspect", f"{base}/nowhere/stack.yaml"])
    assert_user_error(res, f"{base}/nowhere/stack.yaml", "HTTP 404")


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/stack.yaml"
    assert_user_error(run_cli(["inspect", url]), url, "cannot fetch stack manifest", "refused")


def test_missing_raster_url_names_the_raster_and_the_http_status(tmp_path: Path) -> None:
    stack, _ = write_stack(tmp_path / "s", "per-band")
    (tmp_path / "s" / "nir.tif").unlink()
    with serve(tmp_path) as base:
        res = run_cli(["inspect", f"{base}/s/stack.yaml"])
        assert_user_error(res, f"{base}/s/nir.tif", "404")
        # A local manifest naming a raster on a server that is down: GDAL's reason, one line.
        url = f"http://127.0.0.1:{_closed_port()}/red.tif"
        (tmp_path / "s" / "stack.yaml").write_text(
            yaml.safe_dump({"layout": "per-band", "bands": {"red": url}, "dates": "timeline"})
        )
        assert_user_error(run_cli(["inspect", stack]), url, "connect")


def test_labels_by_url_give_the_same_samples(tmp_path: Path) -> None:
    """``--labels http://…`` (a vector file through /vsicurl/, and a CSV) = the local file."""
    import geopandas as gpd
    import pandas as pd

    stack, _ = write_stack(tmp_path / "s", "per-band", shape=(8, 8), n_dates=3)
    points = write_grid_points(tmp_path / "points.csv")
    table = pd.read_csv(points)
    gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table.x, table.y), crs="EPSG:32633").to_file(
        tmp_path / "points.gpkg"
    )
    outputs = {}
    with serve(tmp_path) as base:
        for name, labels in (("local", points), ("csv", f"{base}/points.csv"), ("gpkg", f"{base}/points.gpkg")):
            out = tmp_path / f"{name}.csv"
            res = run_cli(["samples", "--stack", f"{base}/s/stack.yaml", "--labels", labels, "--out", out])
            assert res.rc == 0, res
            outputs[name] = pd.read_csv(out)
        res = run_cli(["samples", "--stack", stack, "--labels", f"{base}/gone.gpkg", "--out", tmp_path / "x.csv"])
        assert_user_error(res, f"{base}/gone.gpkg", "404", outputs=[tmp_path / "x.csv"])
    value_cols = ["label", "date", "red", "nir"]
    for name in ("csv", "gpkg"):
        pd.testing.assert_frame_equal(outputs[name][value_cols], outputs["local"][value_cols])


def test_source_keeps_urls_and_maps_them_to_gdal_paths() -> None:
    from cropseq.remote import RemotePath, gdal_path, is_remote, join, source

    # A URL that went through pathlib (as typer hands a CLI argument over) is repaired.
    assert source(Path("https://host:8080/a/stack.yaml")) == "https://host:8080/a/stack.yaml"
    assert source(Path("/vsicurl/https://host/a.tif")) == "/vsicurl/https://host/a.tif"
    assert isinstance(source("s3://bucket/key.tif"), RemotePath)
    assert source("rel/a.tif") == Path("rel/a.tif") and not is_remote("rel/a.tif")
    assert gdal_path("https://host/a.tif") == "/vsicurl/https://host/a.tif"
    assert gdal_path("s3://bucket/dir/a.tif") == "/vsis3/bucket/dir/a.tif"
    assert gdal_path("gs://bucket/a.tif") == "/vsigs/bucket/a.tif"
    assert gdal_path("az://container/a.tif") == "/vsiaz/container/a.tif"
    assert join("https://host/x/stack.yaml", "../img/a.tif") == "https://host/img/a.tif"
    assert join("s3://bucket/x/stack.yaml", "img/a.tif") == "s3://bucket/x/img/a.tif"
    assert join("https://host/x/stack.yaml", "s3://other/a.tif") == "s3://other/a.tif"
    url = source("https://host/x/S2_20230301.tif?sig=1")
    assert (url.name, url.stem, url.suffix, url.parent) == ("S2_20230301.tif", "S2_20230301", ".tif", "https://host/x/")


def test_gdal_defaults_do_not_override_the_users_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import rasterio.env

    from cropseq.remote import gdal_env

    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "7")
    monkeypatch.delenv("GDAL_DISABLE_READDIR_ON_OPEN", raising=False)
    with gdal_env("https://host/a.tif"):
        options = rasterio.env.getenv()
    assert options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert "GDAL_HTTP_MAX_RETRY" not in options  # the environment's 7 stays in force
    with rasterio.Env(GDAL_HTTP_TIMEOUT="5"), gdal_env("https://host/a.tif"):
        assert rasterio.env.getenv()["GDAL_HTTP_TIMEOUT"] == "5"


def test_globs_are_listed_on_listable_file_systems(tmp_path: Path) -> None:
    """``files:`` globs on GDAL file systems that list (``/vsis3/`` … ; here ``/vsizip/``)."""
    import zipfile

    from cropseq.io import open_stack

    stack, expected = write_stack(tmp_path / "s", "per-date", n_dates=3)
    archive = tmp_path / "scenes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted((tmp_path / "s").glob("S2_*.tif")):
            z.write(f, f"l2a/{f.name}")
    manifest = yaml.safe_load(stack.read_text())
    manifest["files"] = f"/vsizip/{archive}/l2a/S2_*.tif"
    stack.write_text(yaml.safe_dump(manifest))
    np.testing.assert_array_equal(open_stack(stack).values, expected)
