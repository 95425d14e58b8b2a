# cropseq workflow: crop maps from satellite image time series, end to end.
#
#   snakemake --cores 8                                   # the demo scene (config/config.yaml)
#   snakemake --cores 8 --configfile config/dtwsat.yaml   # the real dtwSat stack, one season
#   snakemake --cores 8 --report report.html              # Snakemake's own report afterwards
#
# Every rule is one stage and shells out to the `cropseq` CLI (docs/ARCHITECTURE.md); the
# logic lives in the package. Outputs go to OUTDIR/<scene>/, logs to LOGDIR/<scene>/, rule
# benchmarks to OUTDIR/<scene>/benchmarks/ (the repository's benchmarks/ folder is code).
#
# Config: config/config.yaml, validated against workflow/schemas/config.schema.yaml (defaults
# filled in) before any rule runs. Config files given with --configfile REPLACE the default
# config/config.yaml instead of being merged into it, so `--configfile config/dtwsat.yaml`
# runs only the dtwSat scene; --config KEY=VALUE still overrides single values.

import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "scripts"))
from config_check import short_config_error

min_version("9.0")


# The default config is config/config.yaml of the working directory or, when snakemake runs
# elsewhere (--directory), the one beside this Snakefile.
if not workflow.overwrite_configfiles:
    if os.path.exists("config/config.yaml"):

        configfile: "config/config.yaml"

    else:

        configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# A failure is one line naming the key and what is allowed there (Snakemake's own message
# carries the whole schema).
try:
    validate(config, "workflow/schemas/config.schema.yaml")
except WorkflowError as e:
    raise WorkflowError(short_config_error(e)) from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/map.smk"
include: "workflow/rules/report.smk"


rule all:
    """Every scene, end to end: crop map, confidence, areas, metrics and the HTML report."""
    input:
        all_targets(),
    default_target: True
