# Data stages: simulate (demo scenes) -> inspect (stack/cube) -> tile (checkpoint)
#              samples (stack + labels) -> split (grouped train/val/test)


rule simulate:
    """The seeded synthetic demo scene: per-date stack, field polygons, truth raster, classes."""
    output:
        stack=out("{scene}", "scene", "stack.yaml"),
        labels=out("{scene}", "scene", "labels.gpkg"),
        truth=out("{scene}", "scene", "truth.tif"),
        test_truth=out("{scene}", "scene", "test_truth.tif"),
        classes=out("{scene}", "scene", "classes.yaml"),
    params:
        outdir=lambda wc, output: os.path.dirname(output.stack),
        size=lambda wc: SCENES[wc.scene]["simulate"]["size"],
        dates=lambda wc: SCENES[wc.scene]["simulate"]["dates"],
        seed=lambda wc: SCENES[wc.scene]["simulate"]["seed"],
        label_fraction=lambda wc: SCENES[wc.scene]["simulate"]["label_fraction"],
        field_size=lambda wc: SCENES[wc.scene]["simulate"]["field_size"],
        label_noise=lambda wc: SCENES[wc.scene]["simulate"]["label_noise"],
    wildcard_constraints:
        scene=_alternatives(DEMO_SCENES),
    log:
        logf("{scene}", "simulate"),
    benchmark:
        bench("{scene}", "simulate")
    threads: cpus("simulate")
    resources:
        mem_mb=config["simulate"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq simulate {params.outdir:q} --size {params.size} --dates {params.dates}"
        " --seed {params.seed} --label-fraction {params.label_fraction}"
        " --field-size {params.field_size} --label-noise {params.label_noise} > {log:q} 2>&1"


rule inspect:
    """The stack/cube stage: open the stack as a cube and write its summary (dates, bands, grid)."""
    input:
        stack=lambda wc: stack_path(wc.scene),
    output:
        out("{scene}", "stack.json"),
    log:
        logf("{scene}", "inspect"),
    benchmark:
        bench("{scene}", "inspect")
    threads: cpus("inspect")
    resources:
        mem_mb=config["inspect"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq inspect {input.stack:q} --json > {output:q} 2> {log:q}"


checkpoint tile:
    """Cut the stack into tiles with a halo (the tile count depends on the stack)."""
    input:
        stack=lambda wc: stack_path(wc.scene),
        summary=out("{scene}", "stack.json"),
    output:
        directory(out("{scene}", "tiles")),
    params:
        size=config["tile"]["size"],
        halo=tile_halo(),
    log:
        logf("{scene}", "tile"),
    benchmark:
        bench("{scene}", "tile")
    threads: cpus("tile")
    resources:
        mem_mb=config["tile"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq tile {input.stack:q} --out {output:q} --size {params.size}"
        " --halo {params.halo} > {log:q} 2>&1"


rule samples:
    """Labelled sequences (p x p patches, every date) at the labelled pixels."""
    input:
        unpack(samples_inputs),
    output:
        samples_file("{scene}", "all"),
    params:
        patch=config["samples"]["patch"],
        class_column=lambda wc: SCENES[wc.scene]["class_column"],
        classes=lambda wc, input: opt("--classes", input.get("classes")),
        id_column=lambda wc: opt("--id-column", id_column(wc.scene)),
        start=lambda wc: opt("--start", SCENES[wc.scene]["start"]),
        end=lambda wc: opt("--end", SCENES[wc.scene]["end"]),
        extra=extra("samples"),
    log:
        logf("{scene}", "samples"),
    benchmark:
        bench("{scene}", "samples")
    threads: cpus("samples")
    resources:
        mem_mb=config["samples"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq --threads {threads} samples --stack {input.stack:q} --labels {input.labels:q} --out {output:q}"
        " --patch {params.patch} --class-column {params.class_column:q} {params.classes}"
        " {params.id_column}"
        " {params.start} {params.end} {params.extra} > {log:q} 2>&1"


rule cap_samples:
    """At most samples.max_per_group random samples per field (group): fewer, less redundant
    training pixels for CPU training; every field and class stays."""
    input:
        samples_file("{scene}", "all"),
    output:
        samples_file("{scene}", "capped"),
    params:
        max_per_group=config["samples"]["max_per_group"],
        seed=config["samples"]["seed"],
    log:
        logf("{scene}", "cap_samples"),
    benchmark:
        bench("{scene}", "cap_samples")
    threads: 1
    resources:
        mem_mb=config["samples"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq cap-samples --samples {input:q} --out {output:q} --max-per-group {params.max_per_group}"
        " --seed {params.seed} > {log:q} 2>&1"


rule split:
    """Grouped, stratified train/val/test split (a field never spans two sides)."""
    input:
        split_input,
    output:
        train=samples_file("{scene}", "train"),
        val=samples_file("{scene}", "val"),
        test=samples_file("{scene}", "test"),
    params:
        val_fraction=config["split"]["val_fraction"],
        test_fraction=config["split"]["test_fraction"],
        seed=config["split"]["seed"],
        extra=extra("split"),
    log:
        logf("{scene}", "split"),
    benchmark:
        bench("{scene}", "split")
    threads: cpus("split")
    resources:
        mem_mb=config["split"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq split --samples {input:q} --train {output.train:q} --val {output.val:q}"
        " --test {output.test:q} --val-fraction {params.val_fraction}"
        " --test-fraction {params.test_fraction} --seed {params.seed} {params.extra}"
        " > {log:q} 2>&1"
