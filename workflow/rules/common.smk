# Shared helpers: scene table, output paths, input functions. No rules here.

import json
import os
import re
import shlex

from snakemake.exceptions import WorkflowError

from cropseq.label_raster import RASTER_SUFFIXES

OUT = os.path.normpath(config["outdir"])
LOG = os.path.normpath(config["logdir"])
SCENES = config["scenes"]
DEMO_SCENES = [s for s, c in SCENES.items() if c["type"] == "demo"]
GPU = 1 if config["gpu"] else 0

# Models scored on the test split: the deep model, plus the RandomForest baseline.
MODELS = ["deep"] + (["rf"] if config["baseline"]["enabled"] else [])
MODEL_SUFFIX = {"deep": ".pt", "rf": ".skops"}
if config["predict"]["model"] not in MODELS:
    raise WorkflowError(
        f"config: predict.model is {config['predict']['model']!r} but baseline.enabled is false "
        "(the RandomForest is not trained); set baseline.enabled: true or predict.model: deep"
    )


def _alternatives(names):
    """A regex matching exactly one of ``names`` (never matches when the list is empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


wildcard_constraints:
    scene=_alternatives(SCENES),
    model="deep|rf",
    tile=r"[^/\\.]+",


# --------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------


def out(scene, *parts):
    """OUTDIR/<scene>/<parts...>; ``scene`` may be the literal "{scene}" for rule patterns."""
    return "/".join([OUT, scene, *parts])


def logf(scene, name):
    return f"{LOG}/{scene}/{name}.log"


def bench(scene, name):
    return f"{OUT}/{scene}/benchmarks/{name}.tsv"


def user_path(path):
    """A path from the config: as given when absolute or present relative to the working
    directory, else relative to the checkout (REPO_DIR) when it exists there."""
    if path is None or os.path.isabs(path) or os.path.exists(path):
        return path
    alt = os.path.normpath(os.path.join(REPO_DIR, path))
    return alt if os.path.exists(alt) else path


def is_demo(scene):
    return SCENES[scene]["type"] == "demo"


SAMPLES_FORMAT = config["samples"]["format"]


def samples_file(scene, part):
    """A samples table: part = all | capped | train | val | test."""
    return f"{OUT}/{scene}/samples/{part}.{SAMPLES_FORMAT}"


def stack_path(scene):
    if is_demo(scene):
        return out(scene, "scene", "stack.yaml")
    return user_path(SCENES[scene]["stack"])


def labels_path(scene):
    if is_demo(scene):
        return out(scene, "scene", "labels.gpkg")
    return user_path(SCENES[scene]["labels"])


def classes_path(scene):
    """The class table given to `cropseq samples`, or None (the labels' own table, else
    derived from the class names); the samples tables carry it on to training."""
    c = SCENES[scene].get("classes")
    if c:
        return user_path(c)
    if is_demo(scene):
        return out(scene, "scene", "classes.yaml")
    return None


def truth_path(scene):
    """Reference the map is scored against (evaluate_map), or None: the given truth, or for
    a demo scene the simulated truth of the held-out fields only (test_truth.tif: fields in
    no training table, so the map is scored on unseen fields). A scene without either is
    assessed from its held-out test samples instead (rule assess), not scored twice."""
    t = SCENES[scene].get("truth")
    if t:
        return user_path(t)
    if is_demo(scene):
        return out(scene, "scene", "test_truth.tif")
    return None


def reference_raster(scene):
    """A raster that knows every pixel's class, to label the sample-design points (the
    analyst's part): the demo's simulated truth.tif, or a given truth raster; else None."""
    t = SCENES[scene].get("truth")
    if t:
        return user_path(t) if str(t).lower().endswith((".tif", ".tiff", ".vrt")) else None
    return out(scene, "scene", "truth.tif") if is_demo(scene) else None


def assess_reference(wildcards):
    """The labelled points `cropseq assess` reads: the sample-design points labelled from
    the reference raster, else the held-out test samples (no probability sample of the map:
    a few fields chosen by the group split, many pixels each; see assess_options)."""
    s = wildcards.scene
    if reference_raster(s):
        return out(s, "design", "points.labelled.gpkg")
    return out(s, "samples", "test_points.csv")


def assess_options(scene):
    """Pre-quoted `cropseq assess` options matching assess_reference(). The held-out samples
    are read as a non-probability sample: accuracies of those points (Wilson intervals), no
    class-area estimate (their class mix follows the fields split off, not the map)."""
    if reference_raster(scene):
        return "--design stratified"
    return "--design non-probability --reference-column label"


def id_column(scene):
    """The labels' field-id column (split groups), or None."""
    c = SCENES[scene].get("id_column")
    if c:
        return c
    return "field_id" if is_demo(scene) else None


def train_options_yaml():
    """The training options file (`cropseq train --config`): lr and train.options."""
    import yaml

    opts = dict(config["train"]["options"])
    if config["train"]["lr"] is not None:
        opts["lr"] = config["train"]["lr"]
    return yaml.safe_dump(opts, sort_keys=True) if opts else "{}\n"


def model_path(scene, model):
    return f"{OUT}/{scene}/models/{model}{MODEL_SUFFIX[model]}"


def tile_halo():
    h = config["tile"]["halo"]
    return config["samples"]["patch"] // 2 if h is None else h


# --------------------------------------------------------------------------------------
# shell fragments (pre-quoted; spliced into shell commands as {params.x})
# --------------------------------------------------------------------------------------


def q(value):
    return shlex.quote(str(value))


def opt(flag, value):
    """``--flag 'value'`` or "" when value is None."""
    return "" if value is None else f"{flag} {q(value)}"


# CPUs this process may use: `--cores 8` on a 2-core machine must not run 8 torch/BLAS/joblib
# threads on 2 cores, so every rule's threads are capped at this (Snakemake also caps them at
# --cores). On a cluster, the submitting host's count applies; raise it with --set-threads.
AVAILABLE_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpus(section):
    """Threads of a job of a config section, capped at the machine's CPUs."""
    return max(1, min(config[section]["threads"], AVAILABLE_CPUS))


def extra(section):
    return " ".join(q(a) for a in config[section]["extra"])


# --------------------------------------------------------------------------------------
# tiles (the tile checkpoint decides how many predict jobs there are)
# --------------------------------------------------------------------------------------


def tile_ids(scene):
    """Tile ids written by the tile checkpoint (its tiles.json, read by the package)."""
    from cropseq.errors import CropseqError
    from cropseq.tiling import read_tile_index

    try:
        return read_tile_index(checkpoints.tile.get(scene=scene).output[0])
    except CropseqError as e:
        raise WorkflowError(f"tile stage of scene {scene}: {e}") from None


def tile_store(wildcards):
    # depend on the checkpoint so the DAG is re-evaluated after tiling
    tdir = checkpoints.tile.get(scene=wildcards.scene).output[0]
    return os.path.join(tdir, f"{wildcards.tile}.zarr")


def tile_maps(wildcards):
    return [out(wildcards.scene, "predict", f"{t}.tif") for t in tile_ids(wildcards.scene)]


def tile_confidences(wildcards):
    return [out(wildcards.scene, "predict", f"{t}.confidence.tif") for t in tile_ids(wildcards.scene)]


def tile_uncertainty(wildcards):
    return [out(wildcards.scene, "predict", f"{t}.{wildcards.measure}.tif") for t in tile_ids(wildcards.scene)]


#: Uncertainty layers the predict jobs write and the workflow mosaics (config predict.uncertainty).
UNCERTAINTY = list(config["predict"]["uncertainty"])


# --------------------------------------------------------------------------------------
# input functions
# --------------------------------------------------------------------------------------


def samples_inputs(wildcards):
    d = {
        "stack": stack_path(wildcards.scene),
        "labels": labels_path(wildcards.scene),
        "summary": out(wildcards.scene, "stack.json"),
    }
    c = classes_path(wildcards.scene)
    if c:
        d["classes"] = c
    return d


def split_input(wildcards):
    """The table to split: per-group capped when samples.max_per_group is set."""
    part = "all" if config["samples"]["max_per_group"] is None else "capped"
    return samples_file(wildcards.scene, part)


def train_inputs(wildcards):
    """The training tables (they carry the class table `cropseq samples` stored)."""
    s = wildcards.scene
    return {"train": samples_file(s, "train"), "val": samples_file(s, "val")}


def report_inputs(wildcards):
    s = wildcards.scene
    d = {
        "metrics": [out(s, "eval", f"{m}.json") for m in MODELS],
        "confusion": [out(s, "eval", f"{m}.confusion.png") for m in MODELS],
        "curves": out(s, "models", "deep.curves.png"),
        "history": out(s, "models", "deep.history.csv"),
        "map": out(s, "map", "cropmap.tif"),
        "confidence": out(s, "map", "cropmap.confidence.tif"),
        "area": out(s, "map", "cropmap.area.csv"),
        "assess": out(s, "eval", "assess.json"),
        "assess_plot": out(s, "eval", "assess.areas.png"),
        "stack_summary": out(s, "stack.json"),
        "run_config": out(s, "run_config.json"),
    }
    if truth_path(s):
        d["map_metrics"] = out(s, "eval", "map.json")
        d["map_confusion"] = out(s, "eval", "map.confusion.png")
    return d


def report_map_args(wildcards, input):
    """Pre-quoted --map-metrics/--map-confusion options, when the scene has a map reference."""
    if "map_metrics" not in input.keys():
        return ""
    return f"--map-metrics {q(input.map_metrics)} --map-confusion {q(input.map_confusion)}"


def report_args(wildcards, input):
    """Pre-quoted NAME=PATH pairs for `cropseq report`."""
    names = {"deep": "deep model", "rf": "RandomForest"}
    args = []
    for m, metrics, cm in zip(MODELS, input.metrics, input.confusion):
        args += ["--metrics", f"{names[m]}={metrics}", "--confusion", f"{names[m]}={cm}"]
    return " ".join(q(a) for a in args)


# --------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------


def scene_targets(scene):
    t = [
        out(scene, "map", "cropmap.tif"),
        out(scene, "map", "cropmap.confidence.tif"),
        out(scene, "map", "cropmap.area.csv"),
        out(scene, "eval", "assess.json"),
        out(scene, "report.html"),
    ]
    if truth_path(scene):
        t.append(out(scene, "eval", "map.json"))
    t += [out(scene, "eval", f"{m}.json") for m in MODELS]
    t += [out(scene, "map", f"cropmap.{m}.tif") for m in UNCERTAINTY]
    return t


def all_targets():
    return [t for s in SCENES for t in scene_targets(s)]


def scene_run_config(scene):
    """What the report shows as the run's inputs: the scene and every stage's options."""
    keys = ["outdir", "gpu", "tile", "samples", "split", "train", "baseline", "predict", "assess"]
    cfg = {k: config[k] for k in keys}
    cfg["scene"] = {"name": scene, **SCENES[scene]}
    cfg["scene"]["stack"] = stack_path(scene)
    cfg["scene"]["labels"] = labels_path(scene)
    cfg["scene"]["classes"] = classes_path(scene)
    cfg["scene"]["truth"] = truth_path(scene)
    cfg["scene"]["assess_reference"] = (
        f"{reference_raster(scene)} (stratified sample-design points)" if reference_raster(scene)
        else "held-out test samples (a non-probability sample: accuracies only, no area estimates)"
    )
    return json.dumps(cfg, sort_keys=True)


# --------------------------------------------------------------------------------------
# map products: the parcel map (rule parcels) and the report's product inputs
# --------------------------------------------------------------------------------------


# Parcels (config parcels.source): the labels' polygons, segments of the image, a vector file,
# or none. A scene whose labels are points (a CSV) has no parcels from its labels.
def parcels_made(scene):
    src = config["parcels"]["source"]
    if src == "none":
        return False
    # point labels (a CSV) and label rasters carry no field polygons
    labels = str(labels_path(scene)).lower()
    return src != "labels" or not labels.endswith((".csv", ".txt", *RASTER_SUFFIXES))


def parcels_inputs(wildcards):
    s, src = wildcards.scene, config["parcels"]["source"]
    d = {"map": out(s, "map", "cropmap.tif")}
    if src == "segments":
        d["stack"] = stack_path(s)
    else:
        d["parcels"] = labels_path(s) if src == "labels" else user_path(src)
    if src == "labels":
        d["test"] = samples_file(s, "test")  # the test split's fields are the ones scored
    elif str(truth_path(s) or "").lower().endswith((".tif", ".tiff", ".vrt")):
        d["truth"] = truth_path(s)  # a demo's held-out fields (test_truth.tif), or the given truth
    return d


def parcels_options(wildcards, input):
    """Pre-quoted `cropseq parcels` options: the parcels' source and what scores them."""
    s, cfg = wildcards.scene, config["parcels"]
    if "stack" in input.keys():
        args = ["--segments", cfg["segments"], "--stack", input.stack, "--segment-size", cfg["segment_size"]]
    else:
        args = ["--parcels", input.parcels]
    if "test" in input.keys():
        args += ["--reference-column", SCENES[s]["class_column"], "--test-samples", input.test]
        args += ["--id-column", id_column(s)] if id_column(s) else []
    elif "truth" in input.keys():
        args += ["--truth", input.truth]
    return " ".join(q(a) for a in args)


def report_product_inputs(wildcards):
    """The report's map products: the image, the first uncertainty layer, the reference raster
    (error map) and the parcel map with its score, where the scene has them."""
    s = wildcards.scene
    d = {"stack": stack_path(s)}
    if UNCERTAINTY:
        d["uncertainty"] = out(s, "map", f"cropmap.{UNCERTAINTY[0]}.tif")
    if str(truth_path(s) or "").lower().endswith((".tif", ".tiff", ".vrt")):
        d["truth"] = truth_path(s)
    if parcels_made(s):
        d["parcels"] = out(s, "map", "parcels.tif")
        d["parcels_metrics"] = out(s, "eval", "parcels.json")
    return d


def report_product_args(wildcards, input):
    """Pre-quoted `cropseq report` options of report_product_inputs()."""
    keys = ("stack", "uncertainty", "truth", "parcels", "parcels_metrics")
    return " ".join(f"--{k.replace('_', '-')} {q(input[k])}" for k in keys if k in input.keys())
