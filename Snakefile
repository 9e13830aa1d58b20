# quantbench: quantize -> serve -> benchmark -> evaluate -> aggregate.
from snakemake.utils import min_version

min_version("9.0")


# The embedded demo, unless the user gives their own (a --configfile replaces it, not merged).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/failures.smk"
include: "rules/model.smk"
include: "rules/quantize.smk"


# A new quantization method: one more rules/quantize_<method>.smk (+ its quantbench/quant/ module).
for _extra_quant_rules in sorted(
    Path(str(workflow.current_basedir.get_path_or_uri(secret_free=True)), "rules").glob(
        "quantize_*.smk"
    )
):

    include: _extra_quant_rules


include: "rules/serve.smk"
include: "rules/benchmark.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"


CELLS = plan()


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        rules.compare_published.output,
