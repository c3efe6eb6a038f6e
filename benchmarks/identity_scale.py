"""Identity resolution at scale: 1,000,000 records from scratch, then 10,000 new ones incrementally.

Issue 5 asks: 1,000,000 records resolved in at most 60 s with at most 4 GiB peak memory on this
machine (2 cores), and 10,000 new records against 1,000,000 stored in at most 5 s.

Data: the generator's records through the real `normalize_leads` (benchmarks/identity_data.py),
1,010,000 of them; the 10,000 most recently created are held out as the new arrivals. The timed
steps run in child processes that load the cached parquet first, so timing excludes generation
and loading. Memory is the child's peak RSS (VmHWM, restarted after loading so the load's own
transient peak is reported apart); the RSS after loading is reported beside it so the
resolver's own share is visible.

* child "resolve": `identity.resolve(1,000,000 records)`.
* child "update": `identity.build(1,000,000)` then `identity.update(graph, 10,000 new)`, each
  timed.

    .venv/bin/python -m benchmarks.identity_scale                     # 1,000,000 + 10,000
    .venv/bin/python -m benchmarks.identity_scale --records 100000    # while developing
"""

import argparse
import gc
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks import identity_data
from benchmarks.identity_eval import Evaluation, evaluate
from benchmarks.identity_quality import machine, resolver_version
from orchestration.funnel import identity

TARGET_SECONDS = 60.0
TARGET_PEAK_GIB = 4.0
TARGET_UPDATE_SECONDS = 5.0


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS now, VmHWM its peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> bool:
    """Restart the peak (VmHWM) from the current RSS, so the next peak is the resolver's run.

    VmHWM, not `ru_maxrss`: Linux carries the RSS a process had when it forked into its child's
    `ru_maxrss` across exec, so a child's ru_maxrss can report its parent's memory."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _quality(result: Evaluation) -> dict[str, float]:
    p, c = result.pairwise, result.cluster
    return {
        "pairwise_precision": p.precision,
        "pairwise_recall": p.recall,
        "pairwise_f1": p.f1,
        "cluster_precision": c.precision,
        "cluster_recall": c.recall,
    }


# --------------------------------------------------------------------------------------------
# Children: load, then time one step
# --------------------------------------------------------------------------------------------


def child_resolve(folder: Path, compare_full: bool = False) -> dict[str, Any]:
    records = pl.read_parquet(folder / "base.parquet")
    gc.collect()
    out: dict[str, Any] = {
        "records": records.height,
        "rss_after_load_mib": _status_mib("VmRSS"),
        "peak_after_load_mib": _status_mib("VmHWM"),
        "peak_reset": _reset_peak(),
    }
    started = time.perf_counter()
    result = identity.resolve(records)
    out["seconds"] = time.perf_counter() - started
    out["peak_mib"] = _status_mib("VmHWM")
    # Quality at scale, after the measurements (evaluation memory is not the resolver's).
    truth = pl.read_parquet(folder / "base_truth.parquet")
    out["quality"] = _quality(evaluate(result.select("record_id", "unified_id"), truth))
    return out


def child_update(folder: Path, compare_full: bool = False) -> dict[str, Any]:
    base = pl.read_parquet(folder / "base.parquet")
    new = pl.read_parquet(folder / "new.parquet")
    gc.collect()
    out: dict[str, Any] = {
        "records": base.height,
        "new_records": new.height,
        "rss_after_load_mib": _status_mib("VmRSS"),
    }
    _reset_peak()
    started = time.perf_counter()
    # guard=False: a benchmark measures, it never stores.
    graph = identity.build(base, guard=False)
    out["build_seconds"] = time.perf_counter() - started
    out["build_peak_mib"] = _status_mib("VmHWM")
    gc.collect()
    out["rss_after_build_mib"] = _status_mib("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    graph = identity.update(graph, new, guard=False)
    out["update_seconds"] = time.perf_counter() - started
    out["update_peak_mib"] = _status_mib("VmHWM")
    truth = pl.concat(
        [
            pl.read_parquet(folder / "base_truth.parquet"),
            pl.read_parquet(folder / "new_truth.parquet"),
        ]
    )
    assignments = graph.assignments.select("record_id", "unified_id")
    out["assigned_records"] = assignments.height
    out["quality"] = _quality(evaluate(assignments, truth))
    if compare_full:
        # The same records resolved from scratch: how far the incremental answer is from it
        # (pairwise, taking the full build's clusters as the reference).
        del graph
        gc.collect()
        started = time.perf_counter()
        full = identity.build(pl.concat([base, new]), guard=False)
        out["full_seconds"] = time.perf_counter() - started
        reference = full.assignments.select("record_id", person_id=pl.col("unified_id"))
        out["full_quality"] = _quality(evaluate(full.assignments, truth))
        out["agreement"] = _quality(evaluate(assignments, reference))
    return out


CHILDREN = {"resolve": child_resolve, "update": child_update}


def run_child(step: str, folder: Path, *, compare_full: bool = False) -> dict[str, Any]:
    """Run one step in a fresh interpreter; its last stdout line is the JSON result."""
    command = [sys.executable, "-m", "benchmarks.identity_scale", "--child", step]
    command += ["--dir", str(folder)] + (["--compare-full"] if compare_full else [])
    done = subprocess.run(
        command,
        cwd=identity_data.REPO,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {"failed": f"child {step} exited with {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------


def prepare(records: int, new: int, seed: int) -> Path:
    """Cache the stored base and the held-out arrivals as parquet for the children."""
    folder = identity_data.CACHE_DIR / (
        f"scale-r{records}-n{new}-s{seed}-{identity_data.source_hash()}"
    )
    if (folder / "new_truth.parquet").exists():
        return folder
    data = identity_data.load_records(records + new, seed)
    base, arrivals = identity_data.split_newest(data, new)
    folder.mkdir(parents=True, exist_ok=True)
    base.records.write_parquet(folder / "base.parquet")
    base.truth.write_parquet(folder / "base_truth.parquet")
    arrivals.records.write_parquet(folder / "new.parquet")
    arrivals.truth.write_parquet(folder / "new_truth.parquet")  # written last: marks completion
    return folder


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _fmt_quality(quality: dict[str, float]) -> str:
    return (
        f"pairwise P {quality['pairwise_precision']:.4f} R {quality['pairwise_recall']:.4f} "
        f"F1 {quality['pairwise_f1']:.4f}, cluster P {quality['cluster_precision']:.4f} "
        f"R {quality['cluster_recall']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=identity_data.DEFAULT_SEED)
    parser.add_argument(
        "--compare-full",
        action="store_true",
        help="also build the 1,010,000 from scratch and report how far the update is from it",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.dir, args.compare_full)))
        return

    print(f"benchmark: identity_scale ({machine()}) {datetime.now():%F %H:%M}")
    print(f"resolver: {resolver_version()}")
    started = time.perf_counter()
    folder = prepare(args.records, args.new, args.seed)
    print(
        f"data: {args.records:,} stored + {args.new:,} new records (the newest by created_at), "
        f"seed {args.seed}, ready in {time.perf_counter() - started:.1f} s "
        "(cached after the first run)"
    )

    full = run_child("resolve", folder)
    checks: list[tuple[str, bool | None]] = []
    if "failed" in full:
        print(f"resolve: {full['failed']}")
        checks += [(f"resolve {args.records:,} in <= {TARGET_SECONDS:.0f} s", False)]
    else:
        # The process's peak: loading's own or the resolver's (which includes the loaded data).
        peak_mib = max(full["peak_mib"], full["peak_after_load_mib"])
        peak_gib = peak_mib / 1024
        print(
            f"resolve {full['records']:,} records: {full['seconds']:.1f} s, peak RSS "
            f"{peak_mib:,.0f} MiB ({peak_gib:.2f} GiB); the records alone hold "
            f"{full['rss_after_load_mib']:,.0f} MiB after loading (load peak "
            f"{full['peak_after_load_mib']:,.0f} MiB), so the resolver added "
            f"{full['peak_mib'] - full['rss_after_load_mib']:,.0f} MiB at its peak"
        )
        print(f"    quality: {_fmt_quality(full['quality'])}")
        checks += [
            (
                f"resolve {full['records']:,} in <= {TARGET_SECONDS:.0f} s",
                full["seconds"] <= TARGET_SECONDS,
            ),
            (f"peak RSS <= {TARGET_PEAK_GIB:.0f} GiB", peak_gib <= TARGET_PEAK_GIB),
        ]

    incremental = run_child("update", folder, compare_full=args.compare_full)
    if "failed" in incremental:
        print(f"incremental: FAILED: {incremental['failed']}")
        checks.append((f"update {args.new:,} new in <= {TARGET_UPDATE_SECONDS:.0f} s", None))
    else:
        print(
            f"build {incremental['records']:,} records: {incremental['build_seconds']:.1f} s "
            f"(peak RSS {incremental['build_peak_mib']:,.0f} MiB, RSS after it "
            f"{incremental['rss_after_build_mib']:,.0f} MiB)"
        )
        print(
            f"update with {incremental['new_records']:,} new records: "
            f"{incremental['update_seconds']:.2f} s (peak RSS "
            f"{incremental['update_peak_mib']:,.0f} MiB)"
        )
        print(f"    quality after update: {_fmt_quality(incremental['quality'])}")
        if "agreement" in incremental:
            print(
                f"    full build of the same {incremental['assigned_records']:,} records: "
                f"{incremental['full_seconds']:.1f} s, {_fmt_quality(incremental['full_quality'])}"
            )
            print(
                "    update vs full build (full build as reference): "
                f"{_fmt_quality(incremental['agreement'])}"
            )
        checks.append(
            (
                f"update {incremental['new_records']:,} new in <= {TARGET_UPDATE_SECONDS:.0f} s",
                incremental["update_seconds"] <= TARGET_UPDATE_SECONDS,
            )
        )
    print()
    for name, ok in checks:
        verdict = "n/a (incremental not available)" if ok is None else _verdict(ok)
        print(f"target {name:<40} {verdict}")


if __name__ == "__main__":
    main()
