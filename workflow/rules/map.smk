# Map stages: predict (one job per tile) -> mosaic (crop-map COG + confidence COG)
#             -> area statistics, the map scored against the held-out reference, and
#             accuracy and area with 95 % intervals (Olofsson et al. 2014):
#             sample_design -> label_points (from a reference raster) -> assess


rule predict:
    """Classify one tile (with its halo) into a map and a confidence GeoTIFF."""
    input:
        model=lambda wc: model_path(wc.scene, config["predict"]["model"]),
        tile=tile_store,
    output:
        map=out("{scene}", "predict", "{tile}.tif"),
        confidence=out("{scene}", "predict", "{tile}.confidence.tif"),
        uncertainty=expand(out("{{scene}}", "predict", "{{tile}}.{m}.tif"), m=UNCERTAINTY),
    params:
        start=lambda wc: opt("--start", SCENES[wc.scene]["start"]),
        end=lambda wc: opt("--end", SCENES[wc.scene]["end"]),
        chunk=opt("--chunk", config["predict"]["chunk"]),
        uncertainty=" ".join(f"--uncertainty {m}" for m in UNCERTAINTY),
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
        "LOKY_MAX_CPU_COUNT={threads} cropseq --threads {threads} predict --model {input.model:q} --stack {input.tile:q}"
        " --out {output.map:q} --confidence {output.confidence:q} --workers 0 --threads {threads}"
        " --device {params.device} {params.start} {params.end} {params.chunk} {params.uncertainty} --quiet"
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


rule mosaic_uncertainty:
    """Mosaic one uncertainty layer of the tiles (entropy, margin, least) into one float COG."""
    input:
        tile_uncertainty,
    output:
        out("{scene}", "map", "cropmap.{measure}.tif"),
    wildcard_constraints:
        measure="entropy|margin|least",
    log:
        logf("{scene}", "mosaic_{measure}"),
    benchmark:
        bench("{scene}", "mosaic_{measure}")
    threads: cpus("mosaic")
    resources:
        mem_mb=config["mosaic"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq mosaic {input:q} --out {output:q} > {log:q} 2>&1"


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
    shell:
        "cropseq samples-to-points --samples {input:q} --out {output:q} > {log:q} 2>&1"


rule evaluate_map:
    """Score the crop map against the held-out reference: the given truth (raster or labels)
    or, for a demo scene, the simulated truth of the held-out fields (test_truth.tif)."""
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
            labels={"scene": "{scene}", "figure": "confusion matrix (map vs held-out reference)"},
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
        "LOKY_MAX_CPU_COUNT={threads} cropseq --threads {threads} evaluate --model {input.model:q} --map {input.map:q} --truth {input.truth:q}"
        " --class-column {params.class_column:q} --out {output.metrics:q}"
        " --plot {output.plot:q} {params.extra} > {log:q} 2>&1"


rule sample_design:
    """Stratified random points over the map (strata = map classes), sized for a target
    standard error of the overall accuracy, for reference labelling."""
    input:
        map=out("{scene}", "map", "cropmap.tif"),
    output:
        out("{scene}", "design", "points.gpkg"),
    params:
        target_se=config["assess"]["target_se"],
        allocation=config["assess"]["allocation"],
        min_per_class=config["assess"]["min_per_class"],
        seed=config["assess"]["seed"],
    log:
        logf("{scene}", "sample_design"),
    benchmark:
        bench("{scene}", "sample_design")
    threads: 1
    resources:
        mem_mb=config["assess"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq sample-design --map {input.map:q} --out {output:q} --target-se {params.target_se}"
        " --allocation {params.allocation} --min-per-class {params.min_per_class}"
        " --seed {params.seed} > {log:q} 2>&1"


rule label_points:
    """Fill the points' reference column from the reference raster (the simulated truth
    stands in for the analyst who would label them from field visits or imagery)."""
    input:
        points=out("{scene}", "design", "points.gpkg"),
        truth=lambda wc: reference_raster(wc.scene),
    output:
        out("{scene}", "design", "points.labelled.gpkg"),
    log:
        logf("{scene}", "label_points"),
    benchmark:
        bench("{scene}", "label_points")
    threads: 1
    resources:
        mem_mb=config["assess"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq label-points --points {input.points:q} --reference {input.truth:q} --out {output:q}"
        " > {log:q} 2>&1"


rule assess:
    """Accuracy (OA, UA, PA) and error-adjusted class areas with 95 % intervals from the
    labelled points: the stratified design's points, else the held-out test samples (read
    as a non-probability sample: accuracies of those points only, no area estimates)."""
    input:
        map=out("{scene}", "map", "cropmap.tif"),
        reference=assess_reference,
    output:
        metrics=out("{scene}", "eval", "assess.json"),
        plot=report(
            out("{scene}", "eval", "assess.areas.png"),
            caption="../report/assess.rst",
            category="Accuracy",
            labels={"scene": "{scene}", "figure": "mapped (vs estimated) area"},
        ),
    params:
        options=lambda wc: assess_options(wc.scene),
    log:
        logf("{scene}", "assess"),
    benchmark:
        bench("{scene}", "assess")
    threads: 1
    resources:
        mem_mb=config["assess"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq assess --map {input.map:q} --reference {input.reference:q} {params.options}"
        " --out {output.metrics:q} --plot {output.plot:q} > {log:q} 2>&1"


rule parcels:
    """The parcel-level map: majority class per parcel (GeoPackage + COG), and the share of
    reference parcels (the labels' test-split fields, or the truth raster's) classed right."""
    input:
        unpack(parcels_inputs),
    output:
        table=out("{scene}", "map", "parcels.gpkg"),
        raster=out("{scene}", "map", "parcels.tif"),
        metrics=out("{scene}", "eval", "parcels.json"),
    params:
        options=parcels_options,
    log:
        logf("{scene}", "parcels"),
    benchmark:
        bench("{scene}", "parcels")
    threads: 1
    resources:
        mem_mb=config["parcels"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq parcels --map {input.map:q} {params.options} --out {output.table:q}"
        " --raster {output.raster:q} --metrics {output.metrics:q} > {log:q} 2>&1"
