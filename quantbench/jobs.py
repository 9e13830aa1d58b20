"""What each Snakemake job does; the scripts in scripts/ are one call into here.

Every job writes its result atomically with provenance. A job whose cell fails (a crash, an
OOM, an unsupported kernel) still writes its result file, with status `failed` and the reason,
and exits 0: the sweep goes on and the report shows the failure.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from pathlib import Path

from quantbench.io import provenance, read_json, write_json
from quantbench.results import EngineFacts, ScenarioResult
from quantbench.status import Status


@contextlib.contextmanager
def logged(log_path: str):
    """Send the job's stdout/stderr to its log; progress bars write to the terminal. An
    exception that ends the job is written to the log too (its traceback, not only the
    terminal's). The job stops when its Snakemake is gone (quantbench.guard)."""
    from quantbench.guard import start_job

    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            start_job()
            try:
                yield log
            except BaseException:
                traceback.print_exc()
                raise


def _failure(err: BaseException) -> dict:
    traceback.print_exc()
    return {"status": Status.FAILED, "reason": f"{type(err).__name__}: {err}"[:1000]}


def model_job(smk) -> None:
    """Build or fetch the model; a failure (unknown architecture, missing directory, no Hub) is
    recorded in model.json with status `failed`, and every job after it carries it."""
    from quantbench.models import materialize

    with logged(smk.log[0]):
        out = Path(smk.output[0])
        name, spec = smk.wildcards.model, dict(smk.params.spec)
        prov = provenance(model=name, quantization=None, engine=None, settings={"model": spec})
        try:
            manifest = materialize(name, spec, out.parent)
            write_json(out, {**manifest, "status": Status.OK, "provenance": prov})
        except Exception as err:  # noqa: BLE001
            doc = {"name": name, "source": spec.get("source"), "spec": spec, "provenance": prov}
            write_json(out, {**doc, **_failure(err)})


def quantize_job(smk, method_cls=None) -> None:
    """Quantize with the entry's registered method (or `method_cls`, a
    quantbench.quant.QuantMethod); a failure is recorded."""
    from quantbench.plan import COMMON_QUANT_KEYS
    from quantbench.quant import get_quant_method, run_quantization

    with logged(smk.log[0]):
        model = read_json(smk.input.model)
        spec = dict(smk.params.spec)
        method_cls = method_cls or get_quant_method(spec["method"])
        out = Path(smk.output[0])
        prov = provenance(
            model=smk.wildcards.model,
            quantization=smk.wildcards.quant,
            engine=None,
            settings={"quantization": spec, "calibration": dict(smk.params.calibration)},
        )
        params = {k: v for k, v in spec.items() if k not in COMMON_QUANT_KEYS}
        if model.get("status", Status.OK) != Status.OK:
            return write_json(
                out,
                {
                    "method": spec["method"],
                    "format": smk.params.format,
                    "model": model,
                    "provenance": prov,
                    "status": Status.FAILED,
                    "reason": f"upstream: {model.get('reason')}",
                },
            )
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


def engine_of(engine: str, settings: dict):
    """The engine instance `engine` of a cell: its kind's class (the settings' `kind`, by
    default the instance's name) given the instance's settings, and the kind."""
    from quantbench.engines import get_engine

    settings = dict(settings)
    settings.pop("conda_env", None)  # the job's environment: Snakemake's concern
    kind = settings.pop("kind", engine)
    return get_engine(kind)(settings), kind


def serve_job(smk) -> None:
    """Resolve how the engine runs this cell: kernel, device, dtype, and for server engines the
    full command line. The server itself starts in the benchmark job, once for all scenarios."""
    from quantbench.compat import resolve_kernel

    with logged(smk.log[0]):
        quant = read_json(smk.input.quant)
        w = smk.wildcards
        engine, kind = engine_of(w.engine, smk.params.settings)
        spec = {"status": quant.get("status", Status.OK), "reason": quant.get("reason")}
        if spec["status"] == Status.OK:
            kernel = resolve_kernel(quant["format"], kind, smk.params.kernel)
            spec.update(
                engine.launch_spec(
                    quant["path"], quant["model"]["has_weights"], kernel, f"{w.model}-{w.quant}"
                )
            )
        spec["provenance"] = provenance(
            model=w.model,
            quantization=w.quant,
            engine=w.engine,
            engine_version=engine.version(),
            settings=dict(smk.params.settings),
        )
        write_json(smk.output[0], spec)


# The Transformers engine runs generate() in process: a new KV cache for every request.
IN_PROCESS_CACHE = {
    "prefix_caching": False,
    "how": "in-process generate(): a new KV cache per request, nothing shared",
    "proof": "cached_tokens is 0 by construction",
}


def _energy_over(start_s: float, start_j: float | None, raw: list, rows: list) -> dict | None:
    """A scenario's own GPU energy: the NVML counter read at its start and end, per output
    token of that scenario (warm-up included in the joules, not in the tokens; an engine's own
    client's tokens, which our records do not hold, from its row)."""
    from quantbench import gpu

    joules = gpu.joules_since(start_j)
    if joules is None:
        return None
    tokens = sum(r.get("output_tokens") or 0 for r in raw)
    tokens += sum(
        r.get("total_output_tokens") or 0
        for r in rows
        if r.get("client") not in (None, "quantbench")
    )
    return {
        "joules": joules,
        "seconds": time.perf_counter() - start_s,
        "output_tokens": tokens,
        "j_per_output_token": joules / tokens if tokens else None,
        "method": "NVML total energy counter, read at the scenario's start and end",
    }


def _energy_split(start_j: float | None, measure_s: float, scenarios: dict) -> dict | None:
    """The measuring time's energy: the scenarios' own, and the rest (tokenizer load, prompt
    building, gaps between scenarios) as idle, apart."""
    from quantbench import gpu

    total = gpu.joules_since(start_j)
    if total is None:
        return None
    inside = [e for e in scenarios.values() if e]
    return {
        "total_j": total,
        "scenarios_j": sum(e["joules"] for e in inside),
        "idle_j": total - sum(e["joules"] for e in inside),
        "idle_s": measure_s - sum(e["seconds"] for e in inside),
        "method": "NVML total energy counter over the measuring time",
    }


def _scenario_doc(name, status, rows, prov, *, reason=None, **extra) -> dict:
    typed = ("records", "summary", "prefix_cache", "energy")
    known = {k: extra.pop(k) for k in typed if k in extra}
    return ScenarioResult(name, status, rows, prov, reason, **known, extra=extra).as_dict()


def benchmark_job(smk) -> None:
    """Load the model (or start the server) once, run every scenario in sequence, one result
    file per scenario, plus the engine's start-up facts and the time spent starting vs
    measuring."""
    from transformers import AutoTokenizer

    from quantbench import gpu
    from quantbench.bench import scenario_status
    from quantbench.client.prompts import PromptSource
    from quantbench.guard import device_keys, device_lock
    from quantbench.scenarios import failed_rows, get_scenario, unsupported_reason

    with logged(smk.log[0]):
        launch = read_json(smk.input.launch)
        scenarios = dict(smk.params.scenarios)
        w = smk.wildcards
        engine, _ = engine_of(w.engine, smk.params.settings)
        prov = provenance(
            model=w.model,
            quantization=w.quant,
            engine=w.engine,
            engine_version=engine.version(),
            device=engine.device,
            settings={
                "engine": dict(smk.params.settings),
                "scenarios": scenarios,
                "launch": {k: v for k, v in launch.items() if k != "provenance"},
            },
        )
        outputs = dict(zip(scenarios, smk.output.scenarios))
        facts = EngineFacts(prov)

        def fail(names, status: str, reason: str) -> None:
            for name in names:
                rows = failed_rows(name, scenarios[name], status, reason)
                write_json(outputs[name], _scenario_doc(name, status, rows, prov, reason=reason))

        skipped = list(smk.params.skipped)
        for name in skipped:  # left out by the cell's entry: a result that says so, no rows
            reason = "not requested for this cell (cells: scenarios)"
            write_json(outputs[name], _scenario_doc(name, Status.SKIPPED, [], prov, reason=reason))
        scenarios = {n: c for n, c in scenarios.items() if n not in skipped}
        cannot = {n: unsupported_reason(engine, n) for n in scenarios}
        for name, why in cannot.items():
            if why:
                fail([name], Status.UNSUPPORTED, why)
        supported = [n for n in scenarios if not cannot[n]]
        if smk.params.unsupported:  # known from the config: recorded, not attempted
            fail(supported, Status.UNSUPPORTED, smk.params.unsupported)
            facts.status, facts.reason = Status.UNSUPPORTED, smk.params.unsupported
            return write_json(smk.output.facts, facts.as_dict())
        if launch["status"] != Status.OK:
            fail(supported, Status.FAILED, f"upstream: {launch['reason']}")
            facts.status, facts.reason = Status.FAILED, launch["reason"]
            return write_json(smk.output.facts, facts.as_dict())
        start = time.perf_counter()
        try:
            with (
                device_lock(device_keys(engine), f"benchmark {w.model}/{w.quant}/{w.engine}"),
                engine.session(launch, smk.log.server) as startup,
            ):
                facts.startup = startup
                # A server engine lives in its own environment: its log names its version.
                logged_version = (startup.get("engine_version") or {}).get("value")
                prov["engine_version"] = logged_version or prov["engine_version"]
                measure_start = time.perf_counter()
                energy_start = gpu.energy_j()
                # One source for every prompt of the job: none is a prefix of another.
                prompts = PromptSource(AutoTokenizer.from_pretrained(launch["checkpoint"]))
                cache = launch.get("prefix_cache") or IN_PROCESS_CACHE
                scenario_energy = {}
                for name in supported:
                    try:
                        start_s, start_j = time.perf_counter(), gpu.energy_j()
                        scenario = get_scenario(name)
                        rows, raw, ran = scenario.run(engine, prompts, scenarios[name])
                        energy = scenario_energy[name] = _energy_over(start_s, start_j, raw, rows)
                        doc = _scenario_doc(
                            name,
                            scenario_status(rows),
                            rows,
                            prov,
                            records=raw,
                            summary=scenario.summarize(rows),
                            prefix_cache=cache,
                            energy=energy,
                            **ran,
                        )
                    except Exception as err:  # noqa: BLE001 - this scenario's result
                        reason = _failure(err)["reason"]
                        doc = _scenario_doc(
                            name,
                            Status.FAILED,
                            failed_rows(name, scenarios[name], Status.FAILED, reason),
                            prov,
                            reason=reason,
                        )
                    write_json(outputs[name], doc)
                facts.measure_s = time.perf_counter() - measure_start
                facts.prefix_cache = cache
                facts.energy = _energy_split(energy_start, facts.measure_s, scenario_energy)
        except Exception as err:  # noqa: BLE001 - no model or no server: every scenario fails
            reason = _failure(err)["reason"]
            fail([n for n in supported if not Path(outputs[n]).exists()], Status.FAILED, reason)
            facts.status, facts.reason = Status.FAILED, reason
        facts.session_s = time.perf_counter() - start
        write_json(smk.output.facts, facts.as_dict())


def evaluate_job(smk) -> None:
    """lm-eval on the cell as it is served: the in-process `hf` model for Transformers, the
    engine's own server (started here, stopped after) for vLLM / SGLang. quality.json keeps the
    preflight, the post-run checks and their flags beside the scores, also for a failed run."""
    from quantbench.evaluate import run_evaluation
    from quantbench.guard import device_keys, device_lock

    with logged(smk.log[0]):
        launch = read_json(smk.input.launch)
        cfg = dict(smk.params.evaluation)
        settings = dict(smk.params.settings)
        w = smk.wildcards
        engine, _ = engine_of(w.engine, settings)
        prov = provenance(
            model=w.model,
            quantization=w.quant,
            engine=w.engine,
            engine_version=engine.version(),
            settings={"evaluation": cfg, "engine": settings},
        )
        doc = {"provenance": prov}
        samples = Path(smk.output.samples)
        if launch["status"] != Status.OK:
            doc.update(status=Status.FAILED, reason=f"upstream: {launch['reason']}")
        elif launch["weights"] != "checkpoint":
            reason = "random weights (dummy model): no quality"
            doc.update(status=Status.NOT_APPLICABLE, reason=reason)
        else:
            result: dict = {}
            try:
                lock = device_lock(device_keys(engine), f"evaluate {w.model}/{w.quant}/{w.engine}")
                if engine.in_process:
                    with lock:
                        run_evaluation(launch["checkpoint"], settings, cfg, samples, result)
                else:
                    with lock, engine.serve(launch, smk.log.server) as server:
                        run_evaluation(
                            launch["checkpoint"],
                            settings,
                            cfg,
                            samples,
                            result,
                            base_url=server.base_url,
                            model_name=launch["served_model_name"],
                        )
                doc.update(status=Status.OK, **result)
            except Exception as err:  # noqa: BLE001
                doc.update(result, **_failure(err))
        if not samples.exists():
            samples.write_text("")
        write_json(smk.output.quality, doc)


def report_job(smk) -> None:
    from quantbench.report import build_report

    with logged(smk.log[0]):
        out = Path(smk.output.index).parent
        build_report(
            list(smk.input.bench),
            list(smk.input.facts),
            list(smk.input.quality),
            list(smk.input.quant),
            out,
            samples=list(smk.input.samples),
            config=dict(smk.params.config),
        )


def published_job(smk) -> None:
    import pandas as pd

    from quantbench.published import comparison_table, published_comparison
    from quantbench.tables import write_table

    with logged(smk.log[0]):
        cells = pd.read_csv(smk.input.requests)
        config = {
            "models": dict(smk.params.models),
            "quantizations": dict(smk.params.quantizations),
            "engines": dict(smk.params.engines),
        }
        table = comparison_table(published_comparison(cells, config))
        write_table(table, Path(smk.output.md).with_suffix(""), "Measured vs published (Qwen3)")
