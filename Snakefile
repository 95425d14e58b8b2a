# cropseq workflow: crop maps from satellite image time series, end to end.
#
#   snakemake --cores 8                                   # the demo scene (config/config.yaml)
#   snakemake --cores 8 --configfile config/dtwsat.yaml   # the real dtwSat stack, one season
#   snakemake --cores 8 --report report.html              # Snakemake's own report afterwards
#
# The workflow is workflow/Snakefile, laid out as the Snakemake workflow template
# (workflow/rules/*.smk, workflow/schemas, workflow/envs, config/); this file lets
# `snakemake` run it from the checkout's root. An `include:` would drop its default target
# (Snakemake keeps the including file's, none here: snakemake/snakemake#2056), so it is
# included the way `snakemake -s workflow/Snakefile` reads it, default target and all.

workflow.include("workflow/Snakefile", overwrite_default_target=True)
