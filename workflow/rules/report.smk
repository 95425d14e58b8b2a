# Report stage: the run's inputs, then one self-contained HTML report per scene.


localrules:
    run_config,


rule run_config:
    """The run's inputs for the report: the scene and every stage's options (re-written,
    and the report rebuilt, when they change)."""
    output:
        out("{scene}", "run_config.json"),
    params:
        cfg=lambda wc: scene_run_config(wc.scene),
    log:
        logf("{scene}", "run_config"),
    benchmark:
        bench("{scene}", "run_config")
    threads: 1
    resources:
        mem_mb=100,
    conda:
        "../envs/cropseq.yaml"
    shell:
        "printf '%s\\n' {params.cfg:q} > {output:q} 2> {log:q}"


rule report:
    """One self-contained HTML report (images embedded) and PNG previews of the maps."""
    input:
        unpack(report_inputs),
        unpack(report_product_inputs),
    output:
        html=report(
            out("{scene}", "report.html"),
            caption="../report/report.rst",
            category="Report",
            labels={"scene": "{scene}", "file": "cropseq report (HTML)"},
        ),
        preview=report(
            out("{scene}", "map", "cropmap.png"),
            caption="../report/preview.rst",
            category="Map",
            labels={"scene": "{scene}", "figure": "crop map preview"},
        ),
        confidence_preview=report(
            out("{scene}", "map", "confidence.png"),
            caption="../report/confidence.rst",
            category="Map",
            labels={"scene": "{scene}", "figure": "confidence preview"},
        ),
    params:
        models=report_args,
        map_metrics=report_map_args,
        products=report_product_args,
        title=lambda wc: f"{config['report']['title']}: {wc.scene}",
        description=lambda wc: opt("--description", SCENES[wc.scene]["description"].strip() or None),
        benchmarks=lambda wc: out(wc.scene, "benchmarks"),
        size=config["report"]["preview_size"],
    log:
        logf("{scene}", "report"),
    benchmark:
        bench("{scene}", "report")
    threads: cpus("report")
    resources:
        mem_mb=config["report"]["mem_mb"],
    conda:
        "../envs/cropseq.yaml"
    shell:
        "cropseq report --out {output.html:q} --title {params.title:q}"
        " {params.description} {params.models}"
        " --curves {input.curves:q} --history {input.history:q}"
        " --map {input.map:q} --confidence {input.confidence:q} --area {input.area:q}"
        " {params.map_metrics} --assess {input.assess:q} --assess-plot {input.assess_plot:q}"
        " --stack-summary {input.stack_summary:q} --run-config {input.run_config:q}"
        " --benchmarks {params.benchmarks:q} --preview {output.preview:q}"
        " --confidence-preview {output.confidence_preview:q} --preview-size {params.size} {params.products}"
        " > {log:q} 2>&1"
