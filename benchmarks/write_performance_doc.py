"""Write the measured sections of docs/performance.md from the benchmarks' own output.

    python benchmarks/write_performance_doc.py                      # static benchmark: 10, 500, 2000 MB
    python benchmarks/write_performance_doc.py --sizes 10,500 --repeat 1
    python benchmarks/write_performance_doc.py --probe              # also run benchmarks/probe_benchmark.py

The doc's prose stays as written; only the blocks between ``<!-- generated:NAME -->`` and
``<!-- /generated:NAME -->`` are replaced, each dated and stamped with the machine it ran on.
Without ``--probe`` an existing probe block (or a hand-written "Probe" section) is kept as is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
HERE = Path(__file__).resolve().parent


def machine() -> str:
    """CPU model, cores, RAM and the versions that matter, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown RAM"
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        ram = f"{kib / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    versions = ", ".join(f"{p} {version(p)}" for p in ("numpy", "onnx", "torch"))
    return f"{cpu}, {os.cpu_count()} cores, {ram}, {platform.system()} {platform.release()}, Python {platform.python_version()}, {versions}"


def commit() -> str:
    run = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True, text=True)
    return run.stdout.strip() if run.returncode == 0 else "unknown commit"


def stamp() -> str:
    return f"Measured {dt.date.today().isoformat()} at commit `{commit()}` on: {machine()}."


def static_block(sizes: str, repeat: int) -> str:
    argv = [sys.executable, str(HERE / "static_benchmark.py"), "--sizes", sizes, "--repeat", str(repeat), "--json"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    rows = json.loads(run.stdout.strip().splitlines()[-1])
    lines = [
        stamp(),
        "",
        f"Command: `python benchmarks/static_benchmark.py --sizes {sizes} --repeat {repeat}` (best of {repeat} run(s) per figure).",
        "",
        "| model | weights MB | wall s floor / initlint | x | CPU s floor / initlint | x | peak RSS MB floor / initlint | initlint RSS / weights |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rss_ratio = f"{row['initlint_rss_mb'] / row['weights_mb']:.2f}" if row["weights_mb"] >= 5 else "-"
        lines.append(
            f"| {row['model']} | {row['weights_mb']:.1f} | {row['floor_s']:.2f} / {row['initlint_s']:.2f} | {row['initlint_s'] / row['floor_s']:.2f} "
            f"| {row['floor_cpu_s']:.2f} / {row['initlint_cpu_s']:.2f} | {row['initlint_cpu_s'] / row['floor_cpu_s']:.2f} "
            f"| {row['floor_rss_mb']:.0f} / {row['initlint_rss_mb']:.0f} | {rss_ratio} |"
        )
    return "\n".join(lines)


def probe_block(extra: list[str]) -> str:
    argv = [sys.executable, str(HERE / "probe_benchmark.py"), *extra]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    command = " ".join(["python benchmarks/probe_benchmark.py", *extra])
    return f"{stamp()}\n\nCommand: `{command}`; its output:\n\n```\n{run.stdout.rstrip()}\n```"


def replace_block(doc: str, name: str, body: str, heading: str) -> str:
    """``doc`` with the generated block ``name`` replaced by ``body`` (appended under ``heading`` when absent)."""
    start, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
    block = f"{start}\n{body}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(doc):
        return pattern.sub(lambda _: block, doc)
    return doc.rstrip("\n") + f"\n\n{heading}\n\n{block}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,500,2000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--probe", action="store_true", help="also run the probe benchmark and write its block")
    parser.add_argument("--probe-args", default="", help="arguments passed to probe_benchmark.py, e.g. --quick")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    doc = args.doc.read_text(encoding="utf-8")
    doc = replace_block(doc, "static", static_block(args.sizes, args.repeat), "## Static benchmark results")
    if args.probe:
        doc = replace_block(doc, "probe", probe_block(args.probe_args.split()), "## Probe benchmark results")
    args.doc.write_text(doc, encoding="utf-8")
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
