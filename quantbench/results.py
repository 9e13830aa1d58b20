"""The documents a benchmark job writes (ScenarioResult, EngineFacts), and reading result files
the way the report and the next run need them: a file that is missing
or cannot be read becomes a placeholder document with a status and a reason that names the file
(or the job's log) and the fix, never an exception; a failed result is marked for a retry.

Layout (rules/*.smk): ``results/models/{m}/model.json``, ``results/quantized/{m}/{q}/quant.json``,
``results/serve/{m}/{q}/{e}/launch.json``, ``results/bench/{m}/{q}/{e}/{scenario|engine}.json``,
``results/eval/{m}/{q}/{e}/quality.json``; each job's log under ``results/logs/<job>/``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from quantbench.status import FAULTY_ROWS, SETTLED, Status


def _shallow(doc) -> dict:
    # Not dataclasses.asdict: that deep-copies every row and raw record of a long run.
    return {f.name: getattr(doc, f.name) for f in fields(doc)}


@dataclass
class ScenarioResult:
    """``bench/{m}/{q}/{e}/{scenario}.json``: a scenario's rows (one per measured request, load
    run or batch, each with its own status) and how the file as a whole ended."""

    scenario: str
    status: str
    rows: list[dict]
    provenance: dict
    reason: str | None = None
    records: list[dict] | None = None  # raw per-request records, every timestamp
    summary: list[dict] | None = None  # batch-1: per input length (quantbench.summary)
    prefix_cache: dict | None = None  # how the engine's prefix cache was set
    energy: dict | None = None  # the scenario's own GPU energy, where NVML reads it
    extra: dict = field(default_factory=dict)  # what the runner adds: warm-ups, its search, ...

    def as_dict(self) -> dict:
        doc = {k: v for k, v in _shallow(self).items() if k not in ("extra", "provenance")}
        return {**doc, **self.extra, "provenance": self.provenance}


@dataclass
class EngineFacts:
    """``bench/{m}/{q}/{e}/engine.json``: how the cell's benchmark session ended, the engine's
    start-up facts, the time spent starting vs measuring and the measuring time's energy. A
    field the session did not reach is null."""

    provenance: dict
    status: str = Status.OK
    reason: str | None = None
    startup: dict | None = None
    measure_s: float | None = None
    prefix_cache: dict | None = None
    energy: dict | None = None
    session_s: float | None = None

    def as_dict(self) -> dict:
        return _shallow(self)


_KINDS = {"models": 1, "quantized": 2, "serve": 3, "bench": 3, "eval": 3}
_LOG_DIRS = {
    "models": "model",
    "quantized": "quantize",
    "serve": "serve",
    "bench": "benchmark",
    "eval": "evaluate",
}
_JOBS = {
    "models": "model",
    "quantized": "quantize",
    "serve": "serve",
    "bench": "benchmark",
    "eval": "evaluate",
}
_EXCEPTION_LINE = re.compile(
    r"^([\w.]+(Error|Exception|Exit|Interrupt|Terminated|Busy)|KeyboardInterrupt)\b"
)


def _parse(path: str | Path) -> tuple[Path, str, list[str]] | None:
    """(results root, kind, [model, quant, engine][:depth]) of a result path, or None."""
    parts = Path(path).parts
    for i in range(len(parts) - 2, -1, -1):
        kind = parts[i]
        depth = _KINDS.get(kind)
        if depth is not None and len(parts) == i + depth + 2:
            return Path(*parts[:i]) if i else Path("."), kind, list(parts[i + 1 : i + 1 + depth])
    return None


def job_log(path: str | Path) -> Path | None:
    """The log of the job that writes `path`."""
    parsed = _parse(path)
    if parsed is None:
        return None
    root, kind, names = parsed
    *dirs, last = names
    return root / "logs" / _LOG_DIRS[kind] / Path(*dirs, f"{last}.log")


def _chain(path: str | Path) -> list[Path]:
    """The result files `path` depends on, first to last, ending with `path` itself."""
    parsed = _parse(path)
    if parsed is None:
        return [Path(path)]
    root, kind, names = parsed
    chain = [root / "models" / names[0] / "model.json"]
    if len(names) > 1:
        chain.append(root / "quantized" / names[0] / names[1] / "quant.json")
    if len(names) > 2:
        chain.append(root / "serve" / Path(*names) / "launch.json")
    if kind in ("bench", "eval"):
        chain.append(Path(path))
    return chain


def _last_exception(log: Path) -> str | None:
    try:
        return _exception_in(log.read_text(errors="replace"))
    except OSError:
        return None


def _exception_in(text: str) -> str | None:
    """The exception a log ends on (within its last 200 lines), if any."""
    for line in reversed(text.splitlines()[-200:]):
        if _EXCEPTION_LINE.match(line.strip()):
            return line.strip()[:300]
    return None


def _readable(path: Path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def missing_reason(path: str | Path) -> tuple[str, Path | None]:
    """Why a planned result file is absent: the first job upstream (or its own) that left no
    result, with the error its log ends on; and that log's path."""
    for step in _chain(path):
        if step.exists() and _readable(step):
            continue
        if step.exists():
            return unreadable_reason(step), step
        parsed = _parse(step)
        job = _JOBS[parsed[1]] if parsed else "its"
        log = job_log(step)
        if log is None or not log.exists():
            return f"the {job} job did not run (no {step})", None
        error = _last_exception(log)
        if error:
            return f"the {job} job died: {error}", log
        return f"the {job} job died before writing {step.name} (killed?)", log
    return f"{path} is missing", None


def unreadable_reason(path: str | Path, err: Exception | None = None) -> str:
    what = (
        "is not valid JSON (truncated?)"
        if err is None or isinstance(err, ValueError)
        else (f"cannot be read as a result ({type(err).__name__}: {err})")
    )
    return f"{path} {what}: rerun to measure it again, or delete it"


def failure_log(path: str | Path) -> Path | None:
    """The log that explains a failed result: the first failed or missing step's own log."""
    for step in _chain(path):
        try:
            status = json.loads(step.read_text()).get("status", Status.OK)
        except (OSError, ValueError, AttributeError):
            return job_log(step)
        if status == Status.FAILED:
            return job_log(step)
    return job_log(path)


def _placeholder(path: str | Path, status: str, reason: str, config: dict | None) -> dict:
    parsed = _parse(path)
    names = (parsed[2] if parsed else []) + [None, None, None]
    model, quant, engine = names[:3]
    prov = {
        "model": model,
        "quantization": quant,
        "engine": engine,
        "engine_version": None,
        "device_name": None,
    }
    doc = {"status": status, "reason": reason, "provenance": prov, "placeholder": True}
    kind, name = (parsed[1] if parsed else None), Path(path).stem
    if kind == "bench" and name != "engine":
        doc.update(scenario=name, rows=_placeholder_rows(name, status, reason, config))
    elif kind == "quantized":
        spec = ((config or {}).get("quantizations") or {}).get(quant) or {}
        doc.update(model={"name": model}, method=spec.get("method"), format=spec.get("format"))
    return doc


def _scenario_settings(config: dict | None, scenario: str) -> dict | None:
    return ((config or {}).get("benchmark") or {}).get(scenario)


def _placeholder_rows(scenario: str, status: str, reason: str, config: dict | None) -> list:
    cfg = _scenario_settings(config, scenario)
    if cfg:
        try:
            from quantbench.scenarios import failed_rows

            return failed_rows(scenario, cfg, status, reason)
        except (KeyError, TypeError, ImportError):
            pass
    return [{"scenario": scenario, "status": status, "reason": reason}]


# The errors of a job stopped from outside (SIGTERM: a time limit, scancel; a Ctrl-C), not of
# its own making.
STOPPED = ("JobTerminated", "KeyboardInterrupt")


def _with_logged_rows(doc: dict, log: Path, config: dict | None) -> None:
    """A `single` job stopped before writing its result (a time limit, scancel, a machine taken
    back) logged every request it finished: those rows make the placeholder `partial`, and the
    repeats it did not reach stay `not run` rows, so no table reads the cell as whole. A job
    that failed on its own (its log ends on its error) keeps its `not run`."""
    if doc.get("scenario") != "single":
        return
    from quantbench.scenarios.single import logged_rows

    try:
        text = log.read_text(errors="replace")
    except OSError:
        return
    error = _exception_in(text)
    if error is not None and not any(s in error for s in STOPPED):
        return
    rows = logged_rows(text)
    if not rows:
        return
    repeats = (_scenario_settings(config, "single") or {}).get("repeats", 1)
    done = Counter(r.get("input_len") for r in rows)
    planned = {r["input_len"]: r for r in doc["rows"] if "input_len" in r}
    template = {k: v for k, v in doc["rows"][0].items() if k != "input_len"}
    stopped = [  # the lengths it logged (a cell's own may differ from the config's) and planned
        {**planned.get(n, template), "input_len": n, "repeat": k}
        for n in sorted(set(done) | set(planned))
        for k in range(done[n], repeats)
    ]
    reason = f"{doc['reason']}; the {len(rows)} requests it finished are read from its log"
    rows = [{**r, "recovered_from": str(log)} for r in rows]
    doc.update(status=Status.PARTIAL, reason=reason, rows=rows + stopped)


_REQUIRED = {"bench": ("status", "provenance"), "eval": ("status", "provenance")}


def read_result(path: str | Path, config: dict | None = None) -> dict:
    """The result at `path`, or a placeholder with status `not run` (missing: why, and which
    log to read) or `failed` (unreadable: the file and the fix). A real failed document gets a
    `log` key: the log that explains it."""
    p = Path(path)
    if not p.exists():
        reason, log = missing_reason(p)
        doc = _placeholder(p, Status.NOT_RUN, reason, config)
        if log is not None:
            doc["log"] = str(log)
            if log == job_log(p):  # its own job ran and stopped: what did it log?
                _with_logged_rows(doc, log, config)
        return doc
    try:
        doc = json.loads(p.read_text())
        parsed = _parse(p)
        required = _REQUIRED.get(parsed[1] if parsed else "", ("status",))
        if not isinstance(doc, dict) or any(k not in doc for k in required[1:]):
            raise KeyError(f"no {[k for k in required if k not in doc]} in it")
    except (OSError, ValueError, KeyError) as err:
        reason = unreadable_reason(p, err)
        doc = _placeholder(p, Status.FAILED, reason, config)
        doc["log"] = str(p)
        return doc
    if doc.get("status", Status.OK) not in SETTLED:
        log = failure_log(p)
        if log is not None:
            doc["log"] = str(log)
    return doc


def needs_retry(path: str | Path) -> bool:
    """True for a result the next run must measure again: failed (the file or any of its rows),
    or unreadable. `unsupported`, `skipped`, `not_applicable` and ok results are kept."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError:
        return False  # missing: Snakemake runs it anyway
    except ValueError:
        return True
    if not isinstance(doc, dict):
        return True
    if doc.get("status", Status.OK) == Status.FAILED:
        return True
    return any(
        isinstance(r, dict) and r.get("status") in FAULTY_ROWS for r in doc.get("rows") or []
    )
