"""The tile index: what `cropseq tile` writes is read back (the workflow's tile ids), anything else refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _data_fixtures import run_cli, write_stack

from cropseq.errors import CropseqError
from cropseq.tiling import make_tiles, read_tile_index


def test_reads_what_cropseq_tile_writes(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path / "s", "per-date")  # 7 x 9 pixels
    res = run_cli(["tile", path, "--out", tmp_path / "tiles", "--size", 4, "--halo", 1])
    assert res.rc == 0, res
    ids = ["r000_c000", "r000_c001", "r000_c002", "r001_c000", "r001_c001", "r001_c002"]
    assert read_tile_index(tmp_path / "tiles") == ids
    assert sorted(p.stem for p in (tmp_path / "tiles").glob("*.zarr")) == ids


def _index(tmp_path: Path, content: object) -> Path:
    (tmp_path / "tiles.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return tmp_path


ENTRY = {**make_tiles((4, 4), size=4, halo=0)[0].to_dict(), "path": "r000_c000.zarr"}


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read the tile index"),
        (["r000_c000", "r000_c001"], "no non-empty 'tiles' list"),  # a bare list of ids
        ({"r000_c000": {}}, "no non-empty 'tiles' list"),  # ids as keys
        ({"tiles": []}, "no non-empty 'tiles' list"),
        ({"tiles": ["r000_c000"]}, "tile entry 0 is not a tile"),  # ids, not tile entries
        ({"tiles": [ENTRY, {"tile_id": "r000_c001"}]}, "tile entry 1 is not a tile"),
        ({"tiles": [ENTRY, ENTRY]}, "tile id(s) listed twice: r000_c000"),
    ],
)
def test_refuses_other_shapes(tmp_path: Path, content: object, message: str) -> None:
    with pytest.raises(CropseqError, match=re.escape(message)) as e:
        read_tile_index(_index(tmp_path, content))
    assert e.value.path == str(tmp_path / "tiles.json") and "\n" not in str(e.value)


def test_refuses_a_folder_without_index(tmp_path: Path) -> None:
    (tmp_path / "r000_c000.zarr").mkdir()  # stores alone are not a tile index
    with pytest.raises(CropseqError, match="no tiles.json in this folder"):
        read_tile_index(tmp_path)
