# Run-time failures (issue 19): a failed result is retried by the next run, a run that fails still
# ends with a report of every planned cell, Ctrl-C stops the running job, results/ must be
# writable before anything runs. See README, "When something fails".
import signal as _signal

from quantbench.results import needs_retry as _needs_retry


def all_cores(wildcards):
    """Every core of the run, asked for when a job is scheduled: a rule with `threads:
    workflow.cores` made --unlock, --summary, --cleanup-metadata and --list-changes demand -c.
    """
    return workflow.cores


def planned_results(cells):
    """Every result file the plan writes, upstream first."""
    paths = []
    for c in cells:
        paths += [
            f"{RESULTS}/models/{c.model}/model.json",
            f"{RESULTS}/quantized/{c.model}/{c.quant}/quant.json",
            f"{RESULTS}/serve/{c.model}/{c.quant}/{c.engine}/launch.json",
            *cell_path("bench", "engine.json", [c]),
            *(p for s in SCENARIOS for p in cell_path("bench", f"{s}.json", [c])),
        ]
        if config["evaluation"]["enabled"]:
            paths += cell_path("eval", "quality.json", [c])
    return list(dict.fromkeys(paths))


def _check_writable():
    """Refuse before any job runs when results/ (or a directory in it) cannot be written."""
    root = Path(RESULTS)
    where = root if root.exists() else Path(".")
    dirs = [where]
    if root.exists():
        for d, sub, _ in os.walk(root):
            depth = len(Path(d).relative_to(root).parts)
            sub[:] = [
                s for s in sub if depth < 4 and s not in ("weights", "checkpoint")
            ]
            dirs += [Path(d, s) for s in sub]
    for d in dirs:
        if not os.access(d, os.W_OK | os.X_OK):
            why = (
                "read-only file system"
                if os.statvfs(d).f_flag & os.ST_RDONLY
                else "permission denied"
            )
            raise WorkflowError(
                f"{d}/ is not writable ({why}): the sweep could not record its results. "
                f"Make it writable (chmod -R u+w {d}, or remount it read-write) or run in "
                f"another directory (snakemake -d DIR)."
            )


def _retry_failed(dag_settings):
    """Failed or unreadable results of the plan are forced to run again (only them, and what
    depends on them); unsupported, skipped and not-applicable results stay."""
    targets = set(dag_settings.targets or ())
    if targets - {"all", "aggregate", "compare_published"}:
        return  # explicit files: forcing others would make them targets too
    planned = planned_results(CELLS)
    failed = [p for p in planned if _needs_retry(p)]
    # A result a killed job never wrote: Snakemake alone would not rebuild a missing
    # intermediate file once the report (written by onerror) is newer.
    missing = [p for p in planned if not os.path.exists(p)]
    if len(missing) < len(planned):
        failed += missing
    if failed:
        dag_settings.forcerun = frozenset(dag_settings.forcerun) | set(failed)
        shown = "".join(f"\n  {p}" for p in failed[:20])
        more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
        print(
            f"quantbench: {len(failed)} failed or missing result(s) will be made again:"
            f"{shown}{more}",
            file=sys.stderr,
        )


def _hook_dag_preparation():
    """Snakemake knows its DAG settings only after this file is parsed: add the failed results
    to --forcerun (and re-run incomplete jobs, which an interrupted run leaves) just before it
    builds the DAG."""
    original = getattr(workflow, "_prepare_dag", None)
    if original is None:
        print(
            "quantbench: cannot hook this Snakemake's DAG preparation: failed cells are not "
            "retried automatically; use --forcerun <file>",
            file=sys.stderr,
        )
        return

    def prepare(*args, **kwargs):
        executing = workflow.executor_plugin is not None
        if executing:
            _check_writable()
            workflow.dag_settings.force_incomplete = True
        try:
            _retry_failed(workflow.dag_settings)
        except (AttributeError, TypeError, ValueError) as err:
            print(
                f"quantbench: failed cells not scheduled again: {err}", file=sys.stderr
            )
        return original(*args, **kwargs)

    workflow._prepare_dag = prepare


def _job_processes():
    """The running jobs' processes: this process's children (a job's Python, or the shell that
    runs it, whose children in the same process group are signalled too)."""
    pids = []
    for task in Path("/proc/self/task").glob("*"):
        try:
            pids += [int(k) for k in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    for pid in list(pids):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() in ("bash", "sh", "dash"):
                kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                pids += [int(k) for k in kids if os.getpgid(int(k)) == os.getpgid(pid)]
        except (OSError, ValueError):
            continue
    return pids


def _forward_sigint(signum, frame):
    """Ctrl-C (or SIGINT to this process alone): stop the running jobs now (they stop their
    servers), then let Snakemake handle the interrupt as usual. Without this, SIGINT to
    Snakemake's PID alone left the running job to finish."""
    for pid in _job_processes():
        try:
            os.kill(pid, _signal.SIGTERM)
        except ProcessLookupError:
            pass
    raise KeyboardInterrupt


def report_what_exists():
    """The report over whatever result files exist (a run that failed or was interrupted):
    every planned cell appears, measured, failed or not run (with the log to read)."""
    try:
        from quantbench.report import build_report

        bench = [p for s in SCENARIOS for p in cell_path("bench", f"{s}.json")]
        quality = eval_inputs(None)
        keys = ("evaluation", "models", "quantizations", "benchmark")
        build_report(
            bench,
            cell_path("bench", "engine.json"),
            quality,
            sorted(
                {f"{RESULTS}/quantized/{c.model}/{c.quant}/quant.json" for c in CELLS}
            ),
            Path(REPORT),
            samples=[p.replace("quality.json", "samples.jsonl") for p in quality],
            config={k: config.get(k) for k in keys},
        )
        print(
            f"quantbench: the run failed; {REPORT}/ reports every planned cell "
            "(failed and not-run cells name their log). Fix the cause and run again: only "
            "what failed or did not run is run.",
            file=sys.stderr,
        )
    except Exception as err:  # noqa: BLE001 - the run's own error comes first
        print(f"quantbench: no report of this failed run: {err}", file=sys.stderr)


if workflow.is_main_process:
    _hook_dag_preparation()
    try:
        _signal.signal(_signal.SIGINT, _forward_sigint)
    except ValueError:  # not the main thread
        pass


onerror:
    report_what_exists()
