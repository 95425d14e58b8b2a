# Model stages: train (deep model) and baseline (RandomForest) -> evaluate both on the test split
# Both take the class table (codes, colours) stored with the training table by `cropseq samples`.


rule train:
    """The deep model: CNN encoder + bidirectional LSTM/GRU, with history and curves."""
    input:
        unpack(train_inputs),
    output:
        model=out("{scene}", "models", "deep.pt"),
        options=out("{scene}", "models", "deep.train.yaml"),
        history=out("{scene}", "models", "deep.history.csv"),
        curves=report(
            out("{scene}", "models", "deep.curves.png"),
            caption="../report/curves.rst",
            category="Training",
            labels={"scene": "{scene}", "figure": "training curves"},
        ),
    params:
        arch=opt("--arch", config["train"]["arch"]),
        preset=config["train"]["preset"],
        epochs=opt("--epochs", config["train"]["epochs"]),
        batch_size=opt("--batch-size", config["train"]["batch_size"]),
        seed=config["train"]["seed"],
        options=train_options_yaml(),
        device="cuda" if GPU else "cpu",
        extra=extra("train"),
    log:
        logf("{scene}", "train"),
    benchmark:
        bench("{scene}", "train")
    threads: cpus("train")
    resources:
        mem_mb=config["train"]["mem_mb"],
        gpu=GPU,
    conda:
        "../envs/cropseq.yaml"
    shell:
        "printf '%s' {params.options:q} > {output.options:q}"
        " && cropseq --threads {threads} train --samples {input.train:q} --val-samples {input.val:q}"
        " --out {output.model:q} --config {output.options:q} {params.arch} --preset {params.preset}"
        " {params.epochs} {params.batch_size} --seed {params.seed}"
        " --device {params.device} --history {output.history:q}"
        " --plot {output.curves:q} --quiet {params.extra} > {log:q} 2>&1"


rule baseline:
    """The RandomForest baseline on the flattened sequences (saved with skops)."""
    input:
        unpack(train_inputs),
    output:
        model=out("{scene}", "models", "rf.skops"),
    params:
        seed=config["baseline"]["seed"],
        extra=extra("baseline"),
    log:
        logf("{scene}", "baseline"),
    benchmark:
        bench("{scene}", "baseline")
    threads: cpus("baseline")
    resources:
        mem_mb=config["baseline"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "LOKY_MAX_CPU_COUNT={threads} cropseq --threads {threads} train --arch rf --samples {input.train:q}"
        " --val-samples {input.val:q} --out {output.model:q} --seed {params.seed}"
        " {params.extra} > {log:q} 2>&1"


rule evaluate:
    """Score a model (deep or rf) on the held-out test split."""
    input:
        model=lambda wc: model_path(wc.scene, wc.model),
        samples=samples_file("{scene}", "test"),
    output:
        metrics=out("{scene}", "eval", "{model}.json"),
        plot=report(
            out("{scene}", "eval", "{model}.confusion.png"),
            caption="../report/confusion.rst",
            category="Accuracy",
            labels={"scene": "{scene}", "figure": "confusion matrix ({model}, test split)"},
        ),
    params:
        extra=extra("evaluate"),
    log:
        logf("{scene}", "evaluate_{model}"),
    benchmark:
        bench("{scene}", "evaluate_{model}")
    threads: cpus("evaluate")
    resources:
        mem_mb=config["evaluate"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "LOKY_MAX_CPU_COUNT={threads} cropseq --threads {threads} evaluate --model {input.model:q} --samples {input.samples:q}"
        " --out {output.metrics:q} --plot {output.plot:q} {params.extra} > {log:q} 2>&1"
