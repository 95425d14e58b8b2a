"""stack.yaml parsing and validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from _data_fixtures import tiny_dates, write_raster, write_stack

from cropseq.errors import CropseqError
from cropseq.manifest import load_manifest


def _rewrite(path: Path, **changes: object) -> Path:
    data = yaml.safe_load(path.read_text())
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    path.write_text(yaml.safe_dump(data))
    return path


def test_per_band_manifest_resolves(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path, "per-band", masks=True, shuffle_dates=True, extra={"scale": {"nir": 0.5}})
    m = load_manifest(tmp_path)  # the folder works too
    assert m.path == path.resolve() and m.layout == "per-band"
    assert m.bands == ("red", "nir")
    assert m.band_files["nir"] == tmp_path.resolve() / "nir.tif"
    assert [d.strftime("%Y-%m-%d") for d in m.sorted_dates] == tiny_dates(5)
    assert list(m.dates) != list(m.sorted_dates)  # file order kept, sorting is separate
    assert m.masks == (tmp_path.resolve() / "clouds.tif",)
    assert m.scale == {"red": 1.0, "nir": 0.5} and m.offset == {"red": 0.0, "nir": 0.0}


def test_per_date_manifest_pairs_masks_by_date(tmp_path: Path) -> None:
    write_stack(tmp_path, "per-date", masks=True, shuffle_dates=True)
    m = load_manifest(tmp_path / "stack.yaml")
    assert len(m.files) == 5 and len(m.masks) == 5
    for f, k, d in zip(m.files, m.masks, m.dates, strict=True):
        stamp = d.strftime("%Y%m%d")
        assert stamp in f.name and stamp in k.name


def test_dates_as_list_and_timestamps(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path, "per-band", n_dates=2)
    _rewrite(path, dates=["2021-04-01T10:04:09", "2021-04-01T10:11:25"])
    m = load_manifest(path)
    assert m.dates[0] != m.dates[1]  # same day, different acquisitions: both kept


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"layout": "stacked"}, "layout must be"),
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"valid_range": {"swir": [0, 1]}}, "valid_range names unknown band 'swir'"),
        ({"nodata": {"blue": 0}}, "nodata names unknown band 'blue'"),
        ({"scale": "big"}, "scale must be a number"),
        ({"dates": ["2021-04-01", "2021-04-01", "2021-04-21", "2021-05-01", "2021-05-11"]}, "duplicate date 2021-04-01"),
        ({"dates": ["2021-04-01", "yesterday"]}, "date 2 in dates 'yesterday' is not a date"),
        ({"dates": "nofile.txt"}, "dates file 'nofile.txt'.*not found"),
        ({"mask_invalid": "one"}, "mask_invalid must be"),
        ({"bands": ["red", "nir"]}, "per-band layout needs bands"),
        ({"masks": "m_*.tif"}, "per-band masks must be one multi-date raster"),
        ({"valid_range": {"red": [1, 0]}}, "lo 1.0 > hi 0.0"),
    ],
)
def test_per_band_errors(tmp_path: Path, changes: dict, pattern: str) -> None:
    path, _ = write_stack(tmp_path, "per-band")
    _rewrite(path, **changes)
    with pytest.raises(CropseqError, match=pattern) as e:
        load_manifest(path)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(tmp_path))  # names the file


def test_duplicate_dates_in_timeline_name_the_file(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path, "per-band", n_dates=3)
    (tmp_path / "timeline").write_text("2021-04-01\n2021-04-11\n2021-04-01\n")
    with pytest.raises(CropseqError, match=r"duplicate date 2021-04-01T00:00:00 in timeline \(entries 1 and 3\)"):
        load_manifest(path)
    (tmp_path / "timeline").write_text("2021-04-01\n2021-04-11\n2021-02-30\n")
    with pytest.raises(CropseqError, match="timeline: date on line 3 '2021-02-30' is not a date"):
        load_manifest(path)


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"files": "L8_*.tif"}, "files glob 'L8_\\*.tif' matches no file"),
        ({"date_pattern": "X_(\\d{8})"}, "does not match file name"),
        ({"date_pattern": None}, "needs date_pattern or dates"),
        ({"dates": tiny_dates(5)}, "dates or date_pattern, not both"),
        ({"date_pattern": None, "dates": tiny_dates(4)}, "5 files but 4 dates"),
        ({"bands": {"red": "a.tif"}}, "per-date layout needs bands"),
        ({"bands": ["red", "red"]}, "band 'red' is listed twice"),
        ({"masks": ["a.tif"]}, "1 masks but 5 files"),
    ],
)
def test_per_date_errors(tmp_path: Path, changes: dict, pattern: str) -> None:
    path, _ = write_stack(tmp_path, "per-date")
    _rewrite(path, **changes)
    with pytest.raises(CropseqError, match=pattern):
        load_manifest(path)


def test_missing_manifest_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(CropseqError, match="no stack.yaml in this folder"):
        load_manifest(tmp_path)
    with pytest.raises(CropseqError, match="stack manifest not found"):
        load_manifest(tmp_path / "x.yaml")
    (tmp_path / "s.yaml").write_text("layout: [unclosed\n")
    with pytest.raises(CropseqError, match="not valid YAML"):
        load_manifest(tmp_path / "s.yaml")
    (tmp_path / "s.yaml").write_text("- a\n- b\n")
    with pytest.raises(CropseqError, match="must be a YAML mapping"):
        load_manifest(tmp_path / "s.yaml")


def test_dates_from_descriptions(tmp_path: Path) -> None:
    data = np.zeros((3, 2, 2), np.float32)
    write_raster(tmp_path / "ndvi.tif", data, descriptions=["2020-01-03T10:00:00", "2020-01-01", "2020-01-02"])
    (tmp_path / "stack.yaml").write_text("layout: per-band\nbands: {ndvi: ndvi.tif}\ndates: descriptions\n")
    m = load_manifest(tmp_path)
    assert [d.isoformat() for d in m.sorted_dates] == ["2020-01-01T00:00:00", "2020-01-02T00:00:00", "2020-01-03T10:00:00"]
    write_raster(tmp_path / "ndvi.tif", data, descriptions=["2020-01-01", "", "2020-01-02"])
    with pytest.raises(CropseqError, match="bands without a description"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"mask": {"band": "red", "invalid": [1], "bits": {"c": 3}}}, "mask needs exactly one of invalid"),
        ({"mask": {"band": "SCL", "invalid": [9]}}, "mask band 'SCL' is not one of the bands"),
        ({"mask": {"invalid": [9]}}, "mask needs band"),
        ({"mask": {"band": "nir", "bits": {"cloud": 64}}}, "mask.bits.cloud must be a bit index 0..63"),
        ({"mask": {"band": "nir", "invalid": ["cloud"]}}, "mask.invalid holds 'cloud', not a number"),
        ({"mask": {"band": "nir", "invalid": [9]}, "masks": "clouds.tif"}, "give mask: .* or masks: .*, not both"),
        ({"grid": {"res": 10}}, "grid: unknown key 'res'"),
        ({"grid": {"resolution": -10}}, "grid.resolution must be positive"),
        ({"grid": {"bounds": [1, 2, 0, 3]}}, "left < right"),
        ({"grid": {"bounds": [0, 0, 1, 1], "bbox": [0, 0, 1, 1]}}, "bounds .* or bbox .*, not both"),
        ({"resampling": {"red": "lanczos9"}}, "resampling.red must be one of"),
        ({"pattern": "(?P<date>.*)"}, "pattern is for the single-band layout"),
    ],
)
def test_grid_and_mask_key_errors(tmp_path: Path, changes: dict, pattern: str) -> None:
    path, _ = write_stack(tmp_path, "per-band")
    _rewrite(path, **changes)
    with pytest.raises(CropseqError, match=pattern) as e:
        load_manifest(path)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(tmp_path))


def test_grid_mask_and_scale_keys_resolve(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path, "per-band", extra={"scale": {"nir": 0.5}})
    _rewrite(path, grid={"crs": "EPSG:32634", "resolution": [20, 30], "bbox": [15, 45, 15.1, 45.1]},
             mask={"band": "nir", "bits": {"cloud": 3, "shadow": 4}}, resampling="average")  # fmt: skip
    m = load_manifest(path)
    assert m.grid is not None and m.grid.resolution == (20.0, 30.0) and m.grid.bbox == (15, 45, 15.1, 45.1)
    assert m.mask is not None and m.mask.kind == "bits" and m.cube_bands == ("red",)
    assert m.mask.invalid(np.array([0, 8, 16, 4, 24])).tolist() == [False, True, True, False, True]
    assert m.resampling == {"red": "average", "nir": "average"} and m.scale_set == {"nir"}
    assert m.crs is None  # crs: (assign) and grid.crs (reproject to) are separate keys


def test_single_band_layout_resolves(tmp_path: Path) -> None:
    """One file per band per date; files: {band: glob} takes the date from the name."""
    for d in tiny_dates(3):
        for b in ("NDVI", "EVI"):
            write_raster(tmp_path / f"TERRA_MODIS_h12v10_{b}_{d}.tif", np.zeros((1, 4, 4), np.float32))
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump({
        "layout": "single-band", "files": {"NDVI": "*_NDVI_*.tif", "EVI": "*_EVI_*.tif"}}, sort_keys=False))  # fmt: skip
    m = load_manifest(tmp_path)
    assert m.bands == ("NDVI", "EVI") and [str(d.date()) for d in m.dates] == tiny_dates(3)
    assert [f.name for f in m.band_date_files["EVI"]] == [f"TERRA_MODIS_h12v10_EVI_{d}.tif" for d in tiny_dates(3)]
    # One glob over both bands with a pattern; bands: picks the order.
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump({
        "layout": "single-band", "files": "TERRA_*.tif", "bands": ["EVI", "NDVI"],
        "pattern": r"_(?P<band>NDVI|EVI)_(?P<date>\d{4}-\d{2}-\d{2})"}))  # fmt: skip
    assert load_manifest(tmp_path).bands == ("EVI", "NDVI")
    # A glob that catches two files for one band and date is refused.
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump({
        "layout": "single-band", "files": {"NDVI": "TERRA_*.tif"}}))  # fmt: skip
    with pytest.raises(CropseqError, match="two files for band NDVI on 2021-04-01"):
        load_manifest(tmp_path)


def test_per_date_files_per_band_hint(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path, "per-date")
    _rewrite(path, files={"red": "S2_*.tif"})
    with pytest.raises(CropseqError, match="use layout: single-band"):
        load_manifest(path)


# ----------------------------------------------------------------------------- interleaved layout


def _interleaved(tmp_path: Path, n_dates: int = 3, n_bands: int = 2, descriptions: list[str] | None = None, **keys: object) -> Path:
    write_raster(tmp_path / "all.tif", np.zeros((n_dates * n_bands, 2, 2), np.float32), descriptions=descriptions)
    m = {"layout": "interleaved", "files": "all.tif", "bands": ["red", "nir"][:n_bands], "order": "date-major",
         "dates": tiny_dates(n_dates), **keys}  # fmt: skip
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(m))
    return tmp_path / "stack.yaml"


def test_interleaved_manifest_resolves(tmp_path: Path) -> None:
    m = load_manifest(_interleaved(tmp_path))
    assert m.layout == "interleaved" and m.order == "date-major" and m.bands == ("red", "nir")
    assert m.files == (tmp_path / "all.tif",) and len(m.dates) == 3


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"order": None}, "interleaved layout needs order: date-major"),
        ({"order": "time-major"}, "not 'time-major'"),
        ({"files": "*.tif"}, "not found"),  # one raster, not a glob: checked when opened
        ({"date_pattern": "(\\d{8})"}, "'date_pattern' is not used by the interleaved layout"),
        ({"bands": {"red": "all.tif"}}, "interleaved layout needs bands: [name, ...]"),
    ],
)
def test_interleaved_manifest_errors(tmp_path: Path, keys: dict[str, object], message: str) -> None:
    from cropseq.io import open_stack

    path = _interleaved(tmp_path, **keys)
    with pytest.raises(CropseqError) as e:
        open_stack(path)
    assert message in str(e.value)


def test_order_only_for_interleaved(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path / "s")
    _rewrite(path, order="date-major")
    with pytest.raises(CropseqError, match="order is for the interleaved layout"):
        load_manifest(path)


def test_interleaved_dates_from_descriptions(tmp_path: Path) -> None:
    """Each raster band's description holds its date (here with the band name); the bands of
    one date must agree, which also catches a wrong order."""
    dates = tiny_dates(3)
    desc = [f"{b}_{d}" for d in dates for b in ("red", "nir")]  # date-major
    m = load_manifest(_interleaved(tmp_path, descriptions=desc, dates="descriptions"))
    assert [str(d.date()) for d in m.dates] == dates and m.dates_source == "band descriptions of all.tif"
    with pytest.raises(CropseqError, match=r"do not follow order: band-major \(3 dates × 2 bands\): raster bands 1 and 4"):
        load_manifest(_interleaved(tmp_path, descriptions=desc, dates="descriptions", order="band-major"))
    with pytest.raises(CropseqError, match="7 raster bands is not a whole number of dates × 2 bands"):
        write_raster(tmp_path / "all.tif", np.zeros((7, 2, 2), np.float32), descriptions=[dates[0]] * 7)
        load_manifest(tmp_path / "stack.yaml")


def test_dtype_key_checked(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path / "s")
    assert load_manifest(_rewrite(path, dtype={"red": "int16"})).dtype == {"red": "int16"}
    assert load_manifest(_rewrite(path, dtype="uint16")).dtype == {"red": "uint16", "nir": "uint16"}
    with pytest.raises(CropseqError, match="dtype names unknown band 'swir'"):
        load_manifest(_rewrite(path, dtype={"swir": "int16"}))
    with pytest.raises(CropseqError, match="dtype.red must be one of int8, uint8"):
        load_manifest(_rewrite(path, dtype={"red": "short"}))
