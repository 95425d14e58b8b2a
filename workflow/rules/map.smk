# Map stages: predict (one job per tile) -> mosaic (crop-map COG + confidence COG)
#             -> area statistics, and the map scored against the truth


rule predict:
    """Classify one tile (with its halo) into a map and a confidence GeoTIFF."""
    input:
        model=lambda wc: model_path(wc.scene, config["predict"]["model"]),
        tile=tile_store,
    output:
        map=out("{scene}", "predict", "{tile}.tif"),
        confidence=out("{scene}", "predict", "{tile}.confidence.tif"),
    params:
        start=lambda wc: opt("--start", SCENES[wc.scene]["start"]),
        end=lambda wc: opt("--end", SCENES[wc.scene]["end"]),
        chunk=opt("--chunk", config["predict"]["chunk"]),
        device="cuda" if GPU else "cpu",
        extra=extra("predict"),
    log:
        f"{LOG}/{{scene}}/predict/{{tile}}.log",
    benchmark:
        out("{scene}", "benchmarks", "predict", "{tile}.tsv")
    threads: cpus("predict")
    resources:
        mem_mb=config["predict"]["mem_mb"],
        gpu=GPU,
    conda:
        "../envs/cropseq.yaml"
    shell:
        "LOKY_MAX_CPU_COUNT={threads} cropseq predict --model {input.model:q} --stack {input.tile:q}"
        " --out {output.map:q} --confidence {output.confidence:q} --workers 0 --threads {threads}"
        " --device {params.device} {params.start} {params.end} {params.chunk} --quiet"
        " {params.extra} > {log:q} 2>&1"


rule mosaic:
    """Mosaic the tile maps into one crop-map COG (+ .qml) and the confidences into one COG."""
    input:
        maps=tile_maps,
        confidences=tile_confidences,
    output:
        map=report(
            out("{scene}", "map", "cropmap.tif"),
            caption="../report/cropmap.rst",
            category="Map",
            labels={"scene": "{scene}", "file": "crop map (COG)"},
        ),
        confidence=out("{scene}", "map", "cropmap.confidence.tif"),
        qml=out("{scene}", "map", "cropmap.qml"),
    log:
        logf("{scene}", "mosaic"),
    benchmark:
        bench("{scene}", "mosaic")
    threads: cpus("mosaic")
    resources:
        mem_mb=config["mosaic"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq mosaic {input.maps:q} --out {output.map:q}"
        " --confidence {output.confidence:q} > {log:q} 2>&1"


rule area:
    """Per-class area statistics of the crop map (code, name, pixels, hectares, share)."""
    input:
        map=out("{scene}", "map", "cropmap.tif"),
    output:
        report(
            out("{scene}", "map", "cropmap.area.csv"),
            caption="../report/area.rst",
            category="Map",
            labels={"scene": "{scene}", "table": "area per class"},
        ),
    log:
        logf("{scene}", "area"),
    benchmark:
        bench("{scene}", "area")
    threads: cpus("mosaic")
    resources:
        mem_mb=config["mosaic"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq area {input.map:q} --out {output:q} > {log:q} 2>&1"


rule heldout_points:
    """The held-out test samples as points (one per sample): the map's reference when the
    scene has no truth raster."""
    input:
        samples_file("{scene}", "test"),
    output:
        out("{scene}", "samples", "test_points.csv"),
    log:
        logf("{scene}", "heldout_points"),
    benchmark:
        bench("{scene}", "heldout_points")
    threads: 1
    resources:
        mem_mb=config["evaluate"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    script:
        "../scripts/heldout_points.py"


rule evaluate_map:
    """Score the crop map against the truth (raster or labels) or the held-out test points."""
    input:
        map=out("{scene}", "map", "cropmap.tif"),
        truth=lambda wc: truth_path(wc.scene),
        model=lambda wc: model_path(wc.scene, config["predict"]["model"]),
    output:
        metrics=out("{scene}", "eval", "map.json"),
        plot=report(
            out("{scene}", "eval", "map.confusion.png"),
            caption="../report/map_confusion.rst",
            category="Accuracy",
            labels={"scene": "{scene}", "figure": "confusion matrix (map vs truth)"},
        ),
    params:
        class_column=lambda wc: (
            SCENES[wc.scene]["class_column"] if SCENES[wc.scene].get("truth") else "label"
        ),
        extra=extra("evaluate"),
    log:
        logf("{scene}", "evaluate_map"),
    benchmark:
        bench("{scene}", "evaluate_map")
    threads: cpus("evaluate")
    resources:
        mem_mb=config["evaluate"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "LOKY_MAX_CPU_COUNT={threads} cropseq evaluate --model {input.model:q} --map {input.map:q} --truth {input.truth:q}"
        " --class-column {params.class_column:q} --out {output.metrics:q}"
        " --plot {output.plot:q} {params.extra} > {log:q} 2>&1"
