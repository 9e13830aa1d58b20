"""The ``quantbench`` command.

quantbench report RESULTS [--config FILE ...]   re-aggregate a results directory
quantbench compare RUN_A RUN_B [--out DIR]      two runs cell by cell (Markdown/CSV/HTML)
quantbench index REPORT_DIR                     rebuild only report/index.html
quantbench client --base-url URL --model M ...  the load client (python -m quantbench.client)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _report(args) -> int:
    from quantbench.config_files import ConfigError, load_config_file, merge_configs
    from quantbench.report import build_report

    root = Path(args.results)
    try:  # the files merged as the run merged them: nested keys of a later file override
        config = merge_configs(load_config_file(f) for f in args.config or [])
    except ConfigError as err:
        print(f"quantbench report: {err}", file=sys.stderr)
        return 2
    bench = sorted(str(p) for p in root.glob("bench/*/*/*/*.json") if p.name != "engine.json")
    facts = sorted(str(p) for p in root.glob("bench/*/*/*/engine.json"))
    quality = sorted(str(p) for p in root.glob("eval/*/*/*/quality.json"))
    samples = [str(Path(q).with_name("samples.jsonl")) for q in quality]
    samples = [s for s in samples if Path(s).exists()]
    quant = sorted(str(p) for p in root.glob("quantized/*/*/quant.json"))
    if not bench:
        print(f"quantbench report: no bench/*/*/*/*.json under {root}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else root / "report"
    counts = build_report(bench, facts, quality, quant, out, samples=samples, config=config)
    print(f"quantbench report: {counts['cells']} rows -> {out}/index.html")
    return 0


def _compare(args) -> int:
    from quantbench.compare import write_comparison

    table, md = write_comparison(args.run_a, args.run_b, args.out, alpha=args.alpha)
    print(md)
    print(f"written: {args.out}/compare.md, compare.csv, compare.html", file=sys.stderr)
    return 0


def _index(args) -> int:
    from quantbench.report_html import write_index

    print(write_index(args.report_dir))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["client"]:  # its own argument parser, unchanged
        from quantbench.client.__main__ import main as client_main

        client_main(argv[1:])
        return 0
    ap = argparse.ArgumentParser(
        prog="quantbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("report", help="re-aggregate a results directory into its report/")
    r.add_argument("results", help="a results directory (bench/, eval/, quantized/)")
    r.add_argument(
        "--config",
        action="append",
        help="the run's config file(s), later ones override (the quality gate's "
        "baseline, published scores); default: none",
    )
    r.add_argument("--out", help="report directory (default: RESULTS/report)")
    r.set_defaults(func=_report)
    c = sub.add_parser("compare", help="compare two results directories cell by cell")
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--out", default="compare", help="output directory (default: ./compare)")
    c.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="a difference with p >= alpha is called within noise",
    )
    c.set_defaults(func=_compare)
    i = sub.add_parser("index", help="rebuild report/index.html from a report directory")
    i.add_argument("report_dir")
    i.set_defaults(func=_index)
    sub.add_parser("client", help="the load client; `quantbench client --help`")
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
