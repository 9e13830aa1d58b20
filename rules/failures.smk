# Run-time failures (issue 19): a failed result is retried by the next run, a run that fails still
# ends with a report of every planned cell, Ctrl-C stops the running job, results/ must be
# writable before anything runs. See docs/failures.md.
from quantbench.guard import forward_sigint_to_jobs, hook_dag_preparation

if workflow.is_main_process:
    if not hook_dag_preparation(workflow, before_dag):
        print(
            "quantbench: cannot hook this Snakemake's DAG preparation: failed cells are not "
            "retried automatically; use --forcerun <file>",
            file=sys.stderr,
        )
    forward_sigint_to_jobs()


onerror:
    report_what_exists()
