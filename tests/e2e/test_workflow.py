"""The Snakemake workflow, run through Snakemake itself.

- the config schema: every property described, defaults filled, bad configs stopped (with
  the schema's message) before any rule runs;
- ``snakemake --lint`` is clean; every rule shells out to the CLI; workflow/Snakefile and the
  top-level Snakefile that includes it plan the same jobs;
- the tiny CI scene (config/test.yaml) end to end in a temporary working directory whose
  output folder has spaces and shell metacharacters in its name: every output exists, a
  re-run does nothing, touching the labels re-runs exactly the stages downstream of them;
- a run killed mid-prediction resumes without redoing finished tiles and leaves no
  truncated output;
- the report builder on its own (fabricated inputs);
- the real dtwSat stack (skipped when ../shared/data is absent).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _paths import REPO

SNAKEFILE = REPO / "Snakefile"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TEST_CONFIG = REPO / "config" / "test.yaml"

# An output folder name a careless shell command would mangle.
WEIRD = "out dir/it's & $HOME; (x)"

pytestmark = pytest.mark.timeout(900)


def snakemake(
    *args: str, cwd: Path, check: bool = True, timeout: float = 600, snakefile: Path = SNAKEFILE
) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's Snakefile in ``cwd``; returns the finished process."""
    exe = shutil.which("snakemake")
    cmd = [exe] if exe else [sys.executable, "-m", "snakemake"]
    cmd += ["-s", str(snakefile), "--directory", str(cwd), *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a snakemake (dry-)run: {rule: count}."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Job stats:":
            for row in lines[i + 3 :]:
                m = re.match(r"^(\S+)\s+(\d+)$", row.strip())
                if not m:
                    break
                counts[m.group(1)] = int(m.group(2))
            break
    counts.pop("total", None)
    return counts


def write_config(path: Path, base: Path = TEST_CONFIG, **overrides) -> Path:
    cfg = yaml.safe_load(base.read_text())
    for k, v in overrides.items():
        cfg[k] = v
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------
# schema and config


def _walk_properties(node, where="$"):
    """Yield (path, property schema) of every property in the schema, $defs included."""
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{where}.{name}", sub
        for key, sub in node.items():
            if key in ("properties", "$defs", "additionalProperties", "items", "then", "else", "if") or key.endswith(
                "Of"
            ):
                subs = sub.values() if key in ("properties", "$defs") else (sub if isinstance(sub, list) else [sub])
                for s in subs:
                    yield from _walk_properties(s, f"{where}.{key}")


def test_schema_every_property_has_description_and_valid_defaults():
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    props = list(_walk_properties(schema))
    assert len(props) > 40
    missing = [p for p, s in props if "description" not in s]
    assert not missing, f"properties without a description: {missing}"
    # every leaf default validates against its own property schema
    for path, sub in props:
        if "default" in sub:
            probe = {"$defs": schema["$defs"], **{k: v for k, v in sub.items() if k != "default"}}
            jsonschema.Draft202012Validator(probe).validate(sub["default"])


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml", "dtwsat.yaml"])
def test_shipped_configs_validate(name):
    from snakemake.utils import validate

    cfg = yaml.safe_load((REPO / "config" / name).read_text())
    validate(cfg, str(SCHEMA))
    # defaults were filled in
    assert (cfg["train"]["epochs"] is None or cfg["train"]["epochs"] >= 1) and cfg["tile"]["size"] >= 8 and "outdir" in cfg
    assert "batch_size" in cfg["train"] and "seed" in cfg["train"]
    for scene in cfg["scenes"].values():
        assert "class_column" in scene


def test_default_config_is_the_demo_scene():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    (scene,) = cfg["scenes"].values()
    assert scene["type"] == "demo"
    assert scene["simulate"]["size"] == 512 and scene["simulate"]["dates"] == 24


def test_dtwsat_manifest_points_at_shared_data():
    """The manifest's relative paths land in ../shared/data beside the checkout."""
    manifest = REPO / "config" / "stacks" / "dtwsat.yaml"
    m = yaml.safe_load(manifest.read_text())
    data = (REPO.parent / "shared" / "data" / "dtwsat_lucc_mt" / "raw").resolve()
    for band, rel in m["bands"].items():
        assert (manifest.parent / rel).resolve() == data / f"{band}.tif"
    assert (manifest.parent / m["dates"]).resolve() == data / "timeline"
    assert list(m["bands"]) == ["blue", "red", "nir", "mir", "evi", "ndvi"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train": {"epochs": -3}}, "-3 is less than the minimum of 1"),
        ({"trian": {"epochs": 3}}, "config: unknown key 'trian' at the top level (allowed keys: assess, baseline, evaluate,"),
        ({"train": {"epoch": 3}}, "config: unknown key 'epoch' in train (allowed keys: arch, batch_size, epochs,"),
        ({"scenes": {"a": {"type": "stack"}}}, "'stack' is a required property"),
        ({"scenes": {"bad name": {"type": "demo"}}}, "does not match"),
        ({"split": {"val_fraction": 1.5}}, "1.5 is greater than or equal to the maximum of 1"),
    ],
)
def test_bad_config_stops_before_any_rule(tmp_path, change, message):
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    for k, v in change.items():
        cfg[k] = v
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake("--cores", "1", "--configfile", str(path), cwd=tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out, out[-3000:]
    assert len(out.splitlines()) < 10, out[-3000:]  # the message, not the schema
    assert "Job stats" not in out and "rule simulate" not in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


def test_config_error_is_one_line_naming_key_and_allowed_keys():
    """The formatter on its own: unknown keys at any depth, and other schema errors."""
    sys.path.insert(0, str(REPO / "workflow" / "scripts"))
    try:
        from config_check import short_config_error
    finally:
        sys.path.remove(str(REPO / "workflow" / "scripts"))
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    def message(cfg):
        try:
            validate(cfg, str(SCHEMA))
        except WorkflowError as e:
            return short_config_error(e)
        raise AssertionError("config validated")

    base = yaml.safe_load(TEST_CONFIG.read_text())
    cfg = {**base, "scenes": {"tiny": {**base["scenes"]["tiny"], "simulate": {"size": 64, "dats": 8}}}}
    line = message(cfg)
    assert line.startswith("config: unknown key 'dats' in scenes.tiny.simulate (allowed keys: ")
    assert "dates" in line and "\n" not in line
    line = message({**base, "train": {"epochs": -3}})
    assert line == "config: train.epochs: -3 is less than the minimum of 1"
    assert message({**base, "tarin": 1, "trian": 2}).startswith("config: unknown keys 'tarin', 'trian' at the top level")


def test_lint_is_clean(tmp_path):
    proc = snakemake("--lint", "--configfile", str(TEST_CONFIG), cwd=tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Lints for" not in out, out[-4000:]


def test_rules_shell_out_to_the_cli():
    """No logic in the rules: every rule runs a `cropseq` command, none a script or Python
    block; workflow/scripts keeps only the config-error formatter the Snakefile imports."""
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        found = re.findall(r"^ +(script|run|notebook|wrapper):", smk.read_text(), re.M)
        assert not found, f"{smk.name}: {found}"
    assert sorted(p.name for p in (REPO / "workflow" / "scripts").glob("*.py")) == ["config_check.py"]


def test_template_layout_runs_from_either_snakefile(tmp_path):
    """workflow/Snakefile (the template's place) and the top-level Snakefile that includes it
    plan the same jobs, rule all included: an include alone would lose the default target."""
    cfg = ["-n", "--configfile", str(TEST_CONFIG)]
    top = job_counts(snakemake(*cfg, cwd=tmp_path).stdout)
    inner = job_counts(snakemake(*cfg, cwd=tmp_path, snakefile=REPO / "workflow" / "Snakefile").stdout)
    assert top == inner and top["all"] == 1 and top["simulate"] == 1 and top["cap_samples"] == 1, top


def test_configfile_replaces_default_config(tmp_path):
    """--configfile runs its scenes only: the demo scene of config/config.yaml is not merged in."""
    proc = snakemake("-n", "--configfile", str(TEST_CONFIG), cwd=tmp_path)
    assert "results/tiny/" in proc.stdout
    assert "results/demo/" not in proc.stdout


def test_two_scenes_side_by_side_dry_run(tmp_path):
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["scenes"]["other"] = {"type": "demo", "simulate": {"size": 64, "dates": 8, "seed": 2}}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    counts = job_counts(proc.stdout)
    assert counts["simulate"] == 2 and counts["train"] == 2 and counts["report"] == 2


# --------------------------------------------------------------------------------------
# the tiny scene end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The CI scene run once, with an output folder full of shell metacharacters."""
    work = tmp_path_factory.mktemp("wf")
    config = write_config(work / "test config.yaml", outdir=WEIRD, logdir=f"{WEIRD}/logs")
    t0 = time.perf_counter()
    proc = snakemake("--cores", "2", "--configfile", str(config), cwd=work)
    elapsed = time.perf_counter() - t0
    return {"work": work, "config": config, "out": work / WEIRD / "tiny", "proc": proc, "seconds": elapsed}


def test_end_to_end_outputs(tiny_run):
    import numpy as np
    import rasterio

    out = tiny_run["out"]
    for rel in [
        "map/cropmap.tif",
        "map/cropmap.confidence.tif",
        "map/cropmap.area.csv",
        "map/cropmap.png",
        "eval/deep.json",
        "eval/rf.json",
        "eval/map.json",
        "eval/assess.json",
        "eval/assess.areas.png",
        "map/parcels.gpkg",
        "map/parcels.tif",
        "eval/parcels.json",
        "design/points.gpkg",
        "design/points.labelled.gpkg",
        "eval/deep.confusion.png",
        "eval/rf.confusion.png",
        "models/deep.pt",
        "models/deep.curves.png",
        "models/rf.skops",
        "report.html",
        "stack.json",
        "run_config.json",
    ]:
        assert (out / rel).is_file(), f"missing {rel}"
    tiles = sorted((out / "predict").glob("*.tif"))
    assert len([t for t in tiles if not t.name.endswith((".confidence.tif", ".entropy.tif"))]) == 4
    with rasterio.open(out / "map" / "cropmap.tif") as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 0 and (src.width, src.height) == (64, 64)
        assert src.colormap(1)
    # entropy by default (config predict.uncertainty): float32 in [0, 1], the map's grid
    with rasterio.open(out / "map" / "cropmap.entropy.tif") as src:
        ent = src.read(1)
        assert src.dtypes[0] == "float32" and (src.width, src.height) == (64, 64)
        assert np.nanmin(ent) >= 0.0 and np.nanmax(ent) <= 1.0 and np.isfinite(ent).any()
    # the scene's class table reached the map through samples -> cap -> split -> train
    from cropseq.classes import ClassTable
    from cropseq.raster_metadata import read_class_table

    assert read_class_table(out / "map" / "cropmap.tif") == ClassTable.from_yaml(out / "scene" / "classes.yaml")
    for m in ("deep", "rf", "map"):
        metrics = json.loads((out / "eval" / f"{m}.json").read_text())
        assert 0.0 <= metrics["overall_accuracy"] <= 1.0
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "RandomForest" in html and "Area per class" in html
    logs = tiny_run["work"] / WEIRD / "logs" / "tiny"
    for stage in ("sample_design", "label_points", "assess"):
        assert (logs / f"{stage}.log").is_file() and (out / "benchmarks" / f"{stage}.tsv").is_file(), stage


def test_honest_scoring_outputs(tiny_run):
    """The map is scored on the held-out fields only, the areas are estimated from a
    stratified sample labelled from the truth, and the report shows every interval."""
    import rasterio

    out = tiny_run["out"]
    mapm = json.loads((out / "eval" / "map.json").read_text())
    assert Path(mapm["truth"]).name == "test_truth.tif"  # not truth.tif (training fields included)
    with rasterio.open(out / "scene" / "test_truth.tif") as src:
        held_out = int((src.read(1) > 0).sum())
    assert 0 < mapm["n"] <= held_out
    a = json.loads((out / "eval" / "assess.json").read_text())
    assert a["design"] == "stratified" and a["census"] is False and a["n_samples"] > 0
    lo, hi = a["overall_accuracy"]["ci95"]
    assert lo <= a["overall_accuracy"]["estimate"] <= hi
    for name, c in a["per_class"].items():
        assert {"users_accuracy", "producers_accuracy", "area_map", "area_estimate", "area_se", "area_ci95"} <= set(c)
        assert "ci95" in c["users_accuracy"] and "ci95" in c["producers_accuracy"], name
        if c["area_ci95"] is not None:
            assert c["area_ci95"][0] <= c["area_estimate"] <= c["area_ci95"][1], name
    html = (out / "report.html").read_text()
    assert "Accuracy and area (95 % intervals)" in html and "Map vs held-out reference" in html
    # the whole-map sample covers the training fields: its accuracy is not the held-out score
    assert "training fields included, so this accuracy is not a held-out score" in html
    assert "The held-out score is under Map vs held-out reference." in html
    assert "estimated ha" in html and "95 % CI (ha)" in html and "mapped ha" in html
    assert "overall accuracy [95 % CI]" in html
    # every accuracy cell of the tables carries its interval: "0.953 [0.941, 0.963]"
    assert len(re.findall(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", html)) >= 10
    assert "test_truth.tif" in html and "EPSG:32633 (WGS 84 / UTM zone 33N)" in html
    assert "<img" in html and 'src="http' not in html  # self-contained
    logs = tiny_run["work"] / WEIRD / "logs" / "tiny"
    assert (logs / "train.log").is_file() and len(list((logs / "predict").glob("*.log"))) == 4
    bench = out / "benchmarks"
    assert (bench / "train.tsv").is_file() and len(list((bench / "predict").glob("*.tsv"))) == 4


def test_rerun_does_nothing(tiny_run):
    proc = snakemake("--cores", "2", "--configfile", str(tiny_run["config"]), cwd=tiny_run["work"])
    assert "Nothing to be done" in proc.stdout + proc.stderr


DOWNSTREAM_OF_LABELS = {
    "samples": 1,
    "cap_samples": 1,
    "split": 1,
    "train": 1,
    "baseline": 1,
    "evaluate": 2,
    "predict": 4,
    "mosaic": 1,
    "mosaic_uncertainty": 1,
    "area": 1,
    "evaluate_map": 1,
    "sample_design": 1,
    "label_points": 1,
    "assess": 1,
    "parcels": 1,
    "report": 1,
    "all": 1,
}


def test_touching_labels_reruns_exactly_downstream(tiny_run):
    """A newer labels file re-runs exactly the stages downstream of the labels (not
    simulate, inspect, tile or run_config)."""
    labels = tiny_run["out"] / "scene" / "labels.gpkg"
    cfg = ["--configfile", str(tiny_run["config"])]
    assert "Nothing to be done" in snakemake("-n", *cfg, cwd=tiny_run["work"]).stdout
    st = labels.stat()
    try:
        os.utime(labels, None)  # touch
        # Snakemake >= 8 ignores a newer mtime when the content checksum is unchanged (files
        # below --max-checksum-file-size); 0 restores the classic mtime rule of `touch`.
        proc = snakemake("-n", "--max-checksum-file-size", "0", *cfg, cwd=tiny_run["work"])
        assert job_counts(proc.stdout) == DOWNSTREAM_OF_LABELS, proc.stdout[-3000:]
    finally:
        os.utime(labels, (st.st_atime, st.st_mtime))
    assert "Nothing to be done" in snakemake("-n", *cfg, cwd=tiny_run["work"]).stdout


def test_editing_labels_reruns_exactly_downstream(tiny_run):
    """Changing the labels' content (one field relabelled) re-runs exactly the stages
    downstream of the labels, with Snakemake's default rerun triggers."""
    import geopandas as gpd

    labels = tiny_run["out"] / "scene" / "labels.gpkg"
    cfg = ["--configfile", str(tiny_run["config"])]
    original = labels.read_bytes()
    st = labels.stat()
    try:
        gdf = gpd.read_file(labels)
        other = sorted(set(gdf["label"]))
        gdf.loc[0, "label"] = other[1] if gdf.loc[0, "label"] == other[0] else other[0]
        labels.unlink()
        gdf.to_file(labels, layer="fields", driver="GPKG")
        proc = snakemake("-n", *cfg, cwd=tiny_run["work"])
        assert job_counts(proc.stdout) == DOWNSTREAM_OF_LABELS, proc.stdout[-3000:]
    finally:
        labels.write_bytes(original)
        os.utime(labels, (st.st_atime, st.st_mtime))
    assert "Nothing to be done" in snakemake("-n", *cfg, cwd=tiny_run["work"]).stdout


def test_snakemake_report(tiny_run):
    proc = snakemake(
        "--configfile", str(tiny_run["config"]), "--report", "sm report.html", cwd=tiny_run["work"], check=False
    )
    if proc.returncode != 0 and "report" in (proc.stderr + proc.stdout).lower() and "plugin" in proc.stderr.lower():
        pytest.skip("snakemake report plugin unavailable")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tiny_run["work"] / "sm report.html").stat().st_size > 10_000


@pytest.mark.slow
def test_resume_after_kill(tiny_run, tmp_path):
    """Ctrl-C (SIGINT to the process group) once the first tile job finished; the re-run
    completes without redoing the finished tiles, and no output is left truncated."""
    import rasterio

    work = tmp_path / "resume"
    shutil.copytree(tiny_run["work"], work, symlinks=True)
    config = write_config(work / "test config.yaml", outdir=WEIRD, logdir=f"{WEIRD}/logs")
    out = work / WEIRD / "tiny"
    predict = out / "predict"
    # Start over from the models: drop the tile maps and everything made from them, so the
    # DAG re-runs predict for each tile (missing intermediate files alone re-run nothing).
    shutil.rmtree(predict)
    shutil.rmtree(out / "map")
    for p in [out / "report.html", *(out / "eval").glob("map.*")]:
        p.unlink()
    exe = shutil.which("snakemake")
    cmd = ([exe] if exe else [sys.executable, "-m", "snakemake"]) + [
        "-s", str(SNAKEFILE), "--directory", str(work), "--cores", "1", "--configfile", str(config),
    ]
    log_path = tmp_path / "killed.log"
    log = open(log_path, "w")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def predicts_finished() -> int:
        return len(re.findall(r"Finished jobid: \d+ \(Rule: predict\)", log_path.read_text()))

    def tile_maps() -> list[Path]:
        return [p for p in predict.glob("*.tif") if not p.name.endswith(".confidence.tif")] if predict.is_dir() else []

    try:
        deadline = time.time() + 300
        # One tile job done (Snakemake has recorded it); with --cores 1 the next one is running.
        while time.time() < deadline and proc.poll() is None and not predicts_finished():
            time.sleep(0.05)
        assert proc.poll() is None, "the workflow finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    assert proc.returncode != 0
    # What survived the kill is complete: every final-named file opens and reads, and no
    # temporary file is left behind.
    survived = {p: p.stat().st_mtime_ns for p in predict.glob("*.tif")}
    assert tile_maps(), log_path.read_text()[-3000:]
    for p in survived:
        with rasterio.open(p) as src:
            src.read(1)
    assert not [p.name for p in predict.iterdir() if p.name.startswith(".")]
    # The re-run (the workflow profile sets rerun-incomplete) finishes the rest only.
    snakemake("--cores", "2", "--configfile", str(config), cwd=work)
    for p, mtime in survived.items():
        assert p.stat().st_mtime_ns == mtime, f"{p.name} was redone"
    assert len(tile_maps()) == 4
    assert (out / "report.html").is_file()
    assert "Nothing to be done" in snakemake("-n", "--configfile", str(config), cwd=work).stdout


# --------------------------------------------------------------------------------------
# the report builder on its own


def _fake_map(path: Path, size: int = 40) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    data = (np.arange(size * size).reshape(size, size) // 400 % 3 + 1).astype("uint8")
    data[:3, :3] = 0
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8", nodata=0,
        crs="EPSG:32633", transform=from_origin(500000, 5000000, 10, 10),
    ) as dst:
        dst.write(data, 1)
        dst.write_colormap(1, {0: (0, 0, 0, 0), 1: (27, 120, 55, 255), 2: (253, 174, 97, 255), 3: (33, 102, 172, 255)})
        dst.update_tags(CROPSEQ_CLASSES=json.dumps([
            {"code": 1, "name": "Forest", "color": "#1b7837"},
            {"code": 2, "name": "Maize", "color": "#fdae61"},
            {"code": 3, "name": "Water", "color": "#2166ac"},
        ]))
    conf = path.with_name(path.stem + ".confidence.tif")
    with rasterio.open(
        conf, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32", nodata=float("nan"),
        crs="EPSG:32633", transform=from_origin(500000, 5000000, 10, 10),
    ) as dst:
        dst.write(np.linspace(0.3, 1.0, size * size, dtype="float32").reshape(size, size), 1)


def _fake_metrics(oa: float) -> dict:
    return {
        "n": 30, "labels": ["Forest", "Maize", "Water"], "overall_accuracy": oa, "kappa": oa - 0.05,
        "macro_f1": oa - 0.02,
        "per_class": {c: {"users_accuracy": oa, "producers_accuracy": None if c == "Water" else 0.9, "f1": 0.8,
                          "support": 10, "predicted": 10} for c in ["Forest", "Maize", "Water"]},
        "confusion_matrix": [[9, 1, 0], [1, 9, 0], [0, 0, 10]],
        "confusion_matrix_axes": "rows = reference (true), columns = predicted",
    }


def test_report_builder_is_self_contained(tmp_path):
    import cropseq.cli.commands_report  # noqa: F401  (registers `report` if __init__ does not yet)
    from cropseq.cli import main

    _fake_map(tmp_path / "map.tif")
    (tmp_path / "deep.json").write_text(json.dumps(_fake_metrics(0.93)))
    (tmp_path / "rf.json").write_text(json.dumps(_fake_metrics(0.88)))
    (tmp_path / "map.json").write_text(json.dumps({**_fake_metrics(0.91), "truth": "truth.tif"}))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    fig.savefig(tmp_path / "curves.png")
    plt.close(fig)
    (tmp_path / "history.csv").write_text("epoch,train_loss,val_loss,val_accuracy\n1,1.0,1.1,0.5\n2,0.5,0.6,0.8\n")
    (tmp_path / "area.csv").write_text("code,name,pixels,hectares,share\n1,Forest,800,8.0,0.5\n2,Maize,600,6,0.375\n3,Water,200,2,0.125\n")
    (tmp_path / "stack.json").write_text(json.dumps({"bands": ["B02", "B08"], "dates": ["2021-01-01"] * 20, "crs": "EPSG:32633"}))
    (tmp_path / "run_config.json").write_text(json.dumps({"train": {"epochs": 2}, "scene": {"name": "x <b>"}}))
    bench = tmp_path / "bench"
    (bench / "predict").mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (bench / "train.tsv").write_text(header + "12.5\t0:00:12\t512.3\t900\t500\t500\t1\t2\t90\t20.1\n")
    for t in ("a", "b"):
        (bench / "predict" / f"{t}.tsv").write_text(header + "3.0\t0:00:03\t300\t400\t1\t1\t1\t1\t50\t2.5\n")
    out = tmp_path / "r e p o r t.html"
    rc = main([
        "report", "--out", str(out), "--title", "Demo <scene>", "--description", "a & b",
        "--metrics", f"deep model={tmp_path / 'deep.json'}", "--metrics", f"RandomForest={tmp_path / 'rf.json'}",
        "--confusion", f"deep model={tmp_path / 'curves.png'}",
        "--curves", str(tmp_path / "curves.png"), "--history", str(tmp_path / "history.csv"),
        "--map", str(tmp_path / "map.tif"), "--confidence", str(tmp_path / "map.confidence.tif"),
        "--area", str(tmp_path / "area.csv"), "--map-metrics", str(tmp_path / "map.json"),
        "--stack-summary", str(tmp_path / "stack.json"), "--run-config", str(tmp_path / "run_config.json"),
        "--benchmarks", str(bench), "--preview", str(tmp_path / "preview.png"), "--preview-size", "128",
    ])
    assert rc == 0
    html = out.read_text()
    assert html.count("data:image/png;base64,") >= 4  # map, confidence, confusion, curves
    assert "Demo &lt;scene&gt;" in html and "x &lt;b&gt;" in html  # escaped
    assert "RandomForest" in html and "0.930" in html and "0.880" in html
    assert "93.0 %" in html and "91.0 %" in html  # cards: test OA and map OA
    assert "Forest" in html and "Maize" in html and "16.0" in html  # area table total hectares
    assert "predict" in html and "12.5" in html  # timings
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert (tmp_path / "preview.png").read_bytes()[:4] == b"\x89PNG"


def test_report_intervals_estimated_areas_and_crs_by_name(tmp_path):
    """Every accuracy with its 95 % interval, the mapped area beside the estimate and its
    interval, and a custom CRS (the MODIS sinusoidal grid) by name, not as WKT."""
    from cropseq.accuracy import stratified_assessment
    from cropseq.cli import main

    _fake_map(tmp_path / "map.tif")
    (tmp_path / "deep.json").write_text(json.dumps(_fake_metrics(0.93)))
    a = stratified_assessment([[45, 5, 0], [4, 44, 2], [0, 1, 49]], [8.0, 6.0, 2.0], ["Forest", "Maize", "Water"])
    (tmp_path / "assess.json").write_text(json.dumps({**a.to_dict(), "reference": "points.labelled.gpkg"}))
    (tmp_path / "area.csv").write_text("code,name,pixels,hectares,share\n1,Forest,800,8.0,0.5\n2,Maize,600,6,0.375\n3,Water,200,2,0.125\n")
    modis = ('PROJCS["unnamed",GEOGCS["unnamed ellipse",DATUM["unknown",SPHEROID["unnamed",6371007.181,0]],'
             'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Sinusoidal"],'
             'PARAMETER["longitude_of_center",0],PARAMETER["false_easting",0],PARAMETER["false_northing",0],'
             'UNIT["metre",1]]')
    (tmp_path / "stack.json").write_text(json.dumps({"bands": ["red"], "crs": modis}))
    out = tmp_path / "r.html"
    rc = main(["report", "--out", str(out), "--metrics", f"deep model={tmp_path / 'deep.json'}",
               "--map", str(tmp_path / "map.tif"), "--area", str(tmp_path / "area.csv"),
               "--assess", str(tmp_path / "assess.json"), "--stack-summary", str(tmp_path / "stack.json")])
    assert rc == 0
    html = out.read_text()
    # the model's OA 0.93 of 30 items: Wilson interval [0.787, 0.982]; per class too
    assert "0.930 [0.787, 0.982]" in html and "93.0 %<small> [78.7, 98.2] %</small>" in html
    assert "0.900 [0.596, 0.982]" in html  # PA 0.9 of 10 reference items (9 of 10)
    # the area table: mapped hectares beside the estimate and its interval
    forest = a["Forest"].area
    row = re.search(r"<tr><td>1</td><td>Forest</td>.*?</tr>", html).group(0)
    assert "8.0" in row and f"{forest.estimate:,.1f}" in row and f"{forest.ci95[0]:,.1f} – {forest.ci95[1]:,.1f}" in row
    oa = a.overall_accuracy
    assert f"{oa.estimate:.3f} [{oa.ci95[0]:.3f}, {oa.ci95[1]:.3f}]" in html
    assert "MODIS sinusoidal (+proj=sinu" in html and "PROJCS" not in html


def test_scene_without_truth_is_assessed_as_non_probability_sample(tmp_path):
    """A stack scene without a truth raster: its held-out samples go to cropseq assess as a
    non-probability sample (accuracies of the points, no area estimates), not as a simple
    random one (dry run: the shell command)."""
    from cropseq.simulate import simulate_scene

    info = simulate_scene(tmp_path / "sim", size=32, n_dates=8, seed=0)
    cfg = {"scenes": {"mine": {"type": "stack", "stack": str(info.stack), "labels": str(info.labels),
                               "class_column": "label"}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "-p", "--configfile", str(path), cwd=tmp_path)
    assess = [line for line in proc.stdout.splitlines() if "cropseq assess" in line]
    assert assess and "samples/test_points.csv" in assess[0], proc.stdout[-3000:]
    assert "--design non-probability --reference-column label" in assess[0]
    assert "simple-random" not in proc.stdout


def test_report_non_probability_sample_shows_mapped_areas_only(tmp_path):
    """Held-out field samples (design non_probability): the report shows the accuracies of
    the points with their intervals, the mapped areas, no estimated-area column, and why."""
    from cropseq.accuracy import non_probability_assessment
    from cropseq.cli import main

    _fake_map(tmp_path / "map.tif")
    a = non_probability_assessment([[45, 5, 0], [4, 44, 2], [0, 0, 0]], [8.0, 6.0, 2.0], ["Forest", "Maize", "Water"])
    (tmp_path / "assess.json").write_text(json.dumps({**a.to_dict(), "reference": "test_points.csv"}))
    (tmp_path / "area.csv").write_text("code,name,pixels,hectares,share\n1,Forest,800,8.0,0.5\n2,Maize,600,6,0.375\n3,Water,200,2,0.125\n")
    out = tmp_path / "r.html"
    assert main(["report", "--out", str(out), "--map", str(tmp_path / "map.tif"), "--area", str(tmp_path / "area.csv"),
                 "--assess", str(tmp_path / "assess.json")]) == 0
    html = out.read_text()
    assert "Accuracy of the sample points (95 % intervals)" in html and "Accuracy and area" not in html
    assert "estimated ha" not in html and "95 % CI (ha)" not in html and "mapped ha" in html
    assert "No estimated areas: the reference points (held-out field samples" in html
    assert "not a probability sample of the map" in html and "OA of the sample points (not a map estimate)" in html
    assert "user&#x27;s accuracy undefined (no sample point in the class): Water" in html or \
        "user's accuracy undefined (no sample point in the class): Water" in html
    ua = a["Forest"].users_accuracy
    assert f"{ua.estimate:.3f} [{ua.ci95[0]:.3f}, {ua.ci95[1]:.3f}]" in html


def test_report_missing_input_is_one_line_error(tmp_path, capsys):
    import cropseq.cli.commands_report  # noqa: F401
    from cropseq.cli import main

    rc = main(["report", "--out", str(tmp_path / "r.html"), "--map", str(tmp_path / "nope.tif")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.tif" in err and "not found" in err
    rc = main(["report", "--out", str(tmp_path / "r.html"), "--metrics", "no-equals-sign"])
    assert rc == 2


# --------------------------------------------------------------------------------------
# real data


@pytest.mark.realdata
@pytest.mark.slow
def test_dtwsat_workflow(shared_data, tmp_path):
    """config/dtwsat.yaml end to end on the real dtwSat stack (season 2011/12), in a temporary
    working directory (the config's relative paths resolve against the repository)."""
    assert (shared_data / "dtwsat_lucc_mt" / "raw" / "samples.csv").is_file()
    config = write_config(tmp_path / "dtwsat.yaml", base=REPO / "config" / "dtwsat.yaml")
    snakemake("--cores", "2", "--configfile", str(config), cwd=tmp_path, timeout=1200)
    out = tmp_path / "results" / "dtwsat"
    for rel in ["map/cropmap.tif", "map/cropmap.confidence.tif", "map/cropmap.area.csv", "eval/deep.json",
                "eval/rf.json", "eval/assess.json", "report.html", "samples/test_points.csv"]:
        assert (out / rel).is_file(), rel
    # no truth raster: the map is assessed once, from the held-out samples, not re-scored as "map vs truth"
    assert not (out / "eval" / "map.json").exists()
    deep = json.loads((out / "eval" / "deep.json").read_text())
    rf = json.loads((out / "eval" / "rf.json").read_text())
    a = json.loads((out / "eval" / "assess.json").read_text())
    # The class table travels with the samples: all five dtwSat classes keep their codes in
    # every season, though 2011/12 has no Soybean-maize field (support 0).
    assert set(deep["labels"]) <= {"Cotton-fallow", "Forest", "Soybean-cotton", "Soybean-maize", "Soybean-millet"}
    assert deep["per_class"].get("Soybean-maize", {}).get("support", 0) == 0
    assert rf["overall_accuracy"] > 0.8 and deep["overall_accuracy"] > 0.6
    assert a["design"] == "non_probability" and a["n_samples"] >= 30 and a["overall_accuracy"]["estimate"] > 0.6
    lo, hi = a["overall_accuracy"]["ci95"]
    assert lo < a["overall_accuracy"]["estimate"] <= hi
    html = (out / "report.html").read_text()
    assert "MODIS sinusoidal" in html and "PROJCS" not in html and "Map vs held-out reference" not in html
