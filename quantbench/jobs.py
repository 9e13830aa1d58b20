"""What each Snakemake job does; the scripts in scripts/ are one call into here.

Every job writes its result atomically with provenance. A job whose cell fails (a crash, an
OOM, an unsupported kernel) still writes its result file, with status `failed` and the reason,
and exits 0: the sweep goes on and the report shows the failure.
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path

from quantbench.io import provenance, read_json, write_json

FAILED, OK, NOT_APPLICABLE = "failed", "ok", "not_applicable"


@contextlib.contextmanager
def logged(log_path: str):
    """Send the job's stdout/stderr to its log; progress bars write to the terminal."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield log


def _failure(err: BaseException) -> dict:
    traceback.print_exc()
    return {"status": FAILED, "reason": f"{type(err).__name__}: {err}"[:1000]}


def model_job(smk) -> None:
    from quantbench.models import materialize

    with logged(smk.log[0]):
        out_dir = Path(smk.output[0]).parent
        materialize(smk.wildcards.model, dict(smk.params.spec), out_dir)


def quantize_job(smk, method_cls) -> None:
    """Quantize with `method_cls` (a quantbench.quant.QuantMethod); a failure is recorded."""
    from quantbench.quant import run_quantization

    with logged(smk.log[0]):
        model = read_json(smk.input.model)
        spec = dict(smk.params.spec)
        out = Path(smk.output[0])
        prov = provenance(
            model=smk.wildcards.model,
            quantization=smk.wildcards.quant,
            engine=None,
            settings={"quantization": spec, "calibration": dict(smk.params.calibration)},
        )
        params = {k: v for k, v in spec.items() if k not in ("method", "kernel", "reference_quant")}
        try:
            run_quantization(
                method_cls(params),
                model,
                out.parent,
                dict(smk.params.calibration),
                prov,
                fmt=smk.params.format,
            )
        except Exception as err:  # noqa: BLE001
            write_json(
                out,
                {
                    "method": spec["method"],
                    "format": smk.params.format,
                    "model": model,
                    "provenance": prov,
                    **_failure(err),
                },
            )


def serve_job(smk) -> None:
    """Resolve the engine's launch spec for this cell (in-process engines load in the benchmark
    job; server engines are started there, once for all scenarios)."""
    from quantbench.compat import resolve_kernel
    from quantbench.engines import get_engine

    with logged(smk.log[0]):
        quant = read_json(smk.input.quant)
        engine_name = smk.wildcards.engine
        engine = get_engine(engine_name)(dict(smk.params.settings))
        spec = {"status": quant.get("status", OK), "reason": quant.get("reason")}
        if spec["status"] == OK:
            spec.update(engine.launch_spec(quant["path"], quant["model"]["has_weights"]))
            spec["kernel"] = resolve_kernel(quant["format"], engine_name, smk.params.kernel)
        spec["provenance"] = provenance(
            model=smk.wildcards.model,
            quantization=smk.wildcards.quant,
            engine=engine_name,
            engine_version=engine.version(),
            settings=dict(smk.params.settings),
        )
        write_json(smk.output[0], spec)


def _scenario_doc(name, status, rows, prov, **extra) -> dict:
    return {"scenario": name, "status": status, "rows": rows, **extra, "provenance": prov}


def benchmark_job(smk) -> None:
    """Load the model once, run every scenario in sequence, one result file per scenario."""
    from transformers import AutoTokenizer

    from quantbench.bench import failed_rows, run_single, summarize_rows
    from quantbench.engines import get_engine

    with logged(smk.log[0]):
        launch = read_json(smk.input.launch)
        scenarios = dict(smk.params.scenarios)
        engine_name = smk.wildcards.engine
        engine = get_engine(engine_name)(dict(smk.params.settings))
        prov = provenance(
            model=smk.wildcards.model,
            quantization=smk.wildcards.quant,
            engine=engine_name,
            engine_version=engine.version(),
            device=getattr(engine, "device", None),
            settings={
                "engine": dict(smk.params.settings),
                "scenarios": scenarios,
                "launch": {k: v for k, v in launch.items() if k != "provenance"},
            },
        )
        outputs = dict(zip(scenarios, smk.output))

        def fail_all(reason: str) -> None:
            for name, path in outputs.items():
                rows = failed_rows(scenarios[name], reason)
                write_json(path, _scenario_doc(name, FAILED, rows, prov, reason=reason))

        if launch["status"] != OK:
            return fail_all(f"upstream: {launch['reason']}")
        try:
            load_s = engine.load(launch["checkpoint"], launch["weights"] == "checkpoint")
            tokenizer = AutoTokenizer.from_pretrained(launch["checkpoint"])
        except Exception as err:  # noqa: BLE001 - an unloadable cell fails all its scenarios
            return fail_all(_failure(err)["reason"])
        for name, path in outputs.items():
            try:
                rows, raw = run_single(engine, tokenizer, scenarios[name])
                statuses = {r["status"] for r in rows}
                status = OK if statuses == {OK} else (FAILED if OK not in statuses else "partial")
                doc = _scenario_doc(
                    name,
                    status,
                    rows,
                    prov,
                    summary=summarize_rows(rows),
                    load_s=load_s,
                    records=raw,
                )
            except Exception as err:  # noqa: BLE001
                reason = _failure(err)["reason"]
                doc = _scenario_doc(
                    name, FAILED, failed_rows(scenarios[name], reason), prov, reason=reason
                )
            write_json(path, doc)
        engine.close()


def evaluate_job(smk) -> None:
    from quantbench.evaluate import run_lm_eval

    with logged(smk.log[0]):
        launch = read_json(smk.input.launch)
        cfg = dict(smk.params.evaluation)
        prov = provenance(
            model=smk.wildcards.model,
            quantization=smk.wildcards.quant,
            engine=smk.wildcards.engine,
            settings={"evaluation": cfg},
        )
        doc = {"provenance": prov}
        if launch["status"] != OK:
            doc.update(status=FAILED, reason=f"upstream: {launch['reason']}")
        elif launch["weights"] != "checkpoint":
            doc.update(status=NOT_APPLICABLE, reason="random weights (dummy model): no quality")
        else:
            try:
                doc.update(
                    status=OK,
                    **run_lm_eval(
                        launch["checkpoint"],
                        dict(smk.params.settings),
                        cfg,
                        Path(smk.output.samples),
                    ),
                )
            except Exception as err:  # noqa: BLE001
                doc.update(_failure(err))
        if not Path(smk.output.samples).exists():
            Path(smk.output.samples).write_text("")
        write_json(smk.output.quality, doc)


def report_job(smk) -> None:
    from quantbench.report import build_report

    with logged(smk.log[0]):
        out = Path(smk.output.speed_md).parent
        build_report(list(smk.input.bench), list(smk.input.quality), list(smk.input.quant), out)
