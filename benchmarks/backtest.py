"""The scoring backtest on generated data: does the score rank the people who went on to buy?

Generates `--size` people (default 20,000) with the sandbox generator, runs them through the
worker's own steps in process (orchestration/backtest_run.py: normalise, quarantine, identity,
golden records, timeline), scores them with the shipped lead definition and backtests the score
against the generator's outcome truth (orchestration/funnel/backtest.py): conversion to
opportunity and win per temperature band and score decile, and the AUC of the score for each.

Then the same leads under proposed variants, each a real definition folder written to a temporary
directory and loaded like `leadsync definition backtest PROPOSED` loads one:

* fit only: every engagement point zeroed (global and regional), so only who the lead is counts;
* hand-raises doubled: contact, demo and quote request points and caps twice the shipped ones;

and, for reference, the shipped definition scored *with* the sales-side activity the backtest
leaves out, which shows how much that leakage would flatter the AUC.

    .venv/bin/python -m benchmarks.backtest                 # 20,000 people, seed 7
    .venv/bin/python -m benchmarks.backtest --size 5000 --json
    .venv/bin/python benchmarks/backtest.py                 # as `make bench` runs it
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from orchestration import backtest_run
from orchestration.funnel.backtest import Backtest, backtest, compare
from orchestration.funnel.definition import DEFAULT_PATH, load_definition
from orchestration.funnel.scoring import score

DEFAULT_SIZE = 20_000
HAND_RAISES = ("contact_request", "demo_request", "quote_request")

# (global.yaml document, overlay documents by file name) -> edited in place.
Edit = Callable[[dict[str, Any], dict[str, dict[str, Any]]], None]


def definition_variant(dest: Path, edit: Edit, source: Path = DEFAULT_PATH.parent) -> Path:
    """A copy of the definition folder `source` in `dest` with `edit` applied to its YAML
    documents; returns the new global.yaml (comments are not kept)."""
    shutil.copytree(source, dest, dirs_exist_ok=True)
    main = dest / "global.yaml"
    doc = yaml.safe_load(main.read_text(encoding="utf-8"))
    overlays = {
        p.name: yaml.safe_load(p.read_text(encoding="utf-8"))
        for p in sorted((dest / "regions").glob("*.yaml"))
    }
    edit(doc, overlays)
    main.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    for name, overlay in overlays.items():
        (dest / "regions" / name).write_text(
            yaml.safe_dump(overlay, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
    return main


def zero_engagement(doc: dict[str, Any], overlays: dict[str, dict[str, Any]]) -> None:
    """Every activity type earns nothing, in the global rules and in every overlay."""
    for rule in doc["scoring"]["engagement"]["activities"].values():
        rule["points"] = 0
        rule["cap"] = 0
    for overlay in overlays.values():
        engagement = overlay.get("overrides", {}).get("scoring", {}).get("engagement", {})
        engagement.pop("activities", None)


def double_hand_raises(doc: dict[str, Any], overlays: dict[str, dict[str, Any]]) -> None:
    """Contact, demo and quote requests earn (and may cap at) twice the shipped points."""
    del overlays  # no overlay overrides the hand-raise points
    for kind in HAND_RAISES:
        rule = doc["scoring"]["engagement"]["activities"][kind]
        rule["points"] *= 2
        rule["cap"] *= 2


VARIANTS: dict[str, Edit] = {
    "fit only (engagement zeroed)": zero_engagement,
    "hand-raises doubled": double_hand_raises,
}


def machine() -> str:
    """Cores and RAM of this machine, for the printout. (Not imported from the other benchmarks:
    `make bench` runs this file by path, where the `benchmarks` package is not importable.)"""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return f"{os.cpu_count()} cores, {pages / 2**30:.0f} GiB RAM"


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:5.1f}%"


def _auc(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def _print_backtest(title: str, result: Backtest) -> None:
    print(
        f"\n{title}: AUC opportunity {_auc(result.auc_opportunity)}, win {_auc(result.auc_win)}"
        f"  ({result.leads:,} leads, {result.opportunities:,} opportunities, {result.wins:,} wins)"
    )
    print(f"  {'band':<8}{'leads':>8}{'opps':>7}{'opp rate':>10}{'wins':>6}{'win rate':>10}")
    for row in result.bands.iter_rows(named=True):
        print(
            f"  {row['band']:<8}{row['leads']:>8,}{row['opportunities']:>7,}"
            f"{_pct(row['opportunity_rate']):>10}{row['wins']:>6,}{_pct(row['win_rate']):>10}"
        )
    print(f"  {'decile':<8}{'scores':>11}{'leads':>8}{'opps':>7}{'opp rate':>10}{'win rate':>10}")
    for row in result.deciles.iter_rows(named=True):
        scores = f"{row['score_min']}..{row['score_max']}"
        print(
            f"  {row['decile']:<8}{scores:>11}{row['leads']:>8,}{row['opportunities']:>7,}"
            f"{_pct(row['opportunity_rate']):>10}{_pct(row['win_rate']):>10}"
        )


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="people to generate")
    parser.add_argument("--seed", type=int, default=backtest_run.DEFAULT_SEED)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(list(argv) if argv is not None else None)

    current = load_definition()
    started = time.perf_counter()
    data = backtest_run.load_data(current, size=args.size, seed=args.seed)
    prepared_s = time.perf_counter() - started

    started = time.perf_counter()
    base = backtest_run.run(data, current)
    backtest_s = time.perf_counter() - started

    variants: dict[str, Backtest] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, edit) in enumerate(VARIANTS.items()):
            proposed = load_definition(definition_variant(Path(tmp) / str(i), edit))
            variants[name] = backtest_run.run(data, proposed)
    # The leakage reference: the same scoring with the sales-side activity left in.
    leaky_scores = score(data.unified, data.activities, current, now=data.now)
    leaky = backtest(
        leaky_scores.select("unified_id", "score", "temperature"), data.outcomes, current
    )

    header = {
        **data.describe(),
        "prepare_s": round(prepared_s, 2),
        "score_and_backtest_s": round(backtest_s, 3),
        "machine": machine(),
    }
    if args.json:
        print(
            json.dumps(
                {
                    **header,
                    "current": base.to_dict(),
                    "variants": {n: compare(base, v).to_dict() for n, v in variants.items()},
                    "with_sales_activity": leaky.to_dict(),
                },
                ensure_ascii=False,
                default=str,
            )
        )
        return
    print(f"scoring backtest: {args.size:,} generated people, seed {args.seed}")
    for key, value in header.items():
        print(f"  {key:<22} {value}")
    _print_backtest(f"current definition ({current.version})", base)
    for name, result in variants.items():
        _print_backtest(f"proposed: {name} ({result.version})", result)
    _print_backtest("current definition scored WITH sales activity (leakage reference)", leaky)
    print("\nAUC, current -> proposed (delta)")
    rows: list[tuple[str, Backtest]] = [*variants.items(), ("with sales activity", leaky)]
    for name, result in rows:
        table = compare(base, result).auc
        cells = [
            f"{m} {_auc(c)} -> {_auc(p)} ({'n/a' if d is None else f'{d:+.3f}'})"
            for m, c, p, d in table.iter_rows()
        ]
        print(f"  {name:<30} " + "   ".join(cells))
    # Whether the shipped score beats chance at all on this data, for the reader in a hurry.
    top = base.deciles.filter(pl.col("decile") == pl.col("decile").max())
    if top.height:
        print(
            f"\ntop decile converts to opportunity at {_pct(top['opportunity_rate'][0]).strip()} "
            f"vs {_pct(base.opportunities / max(base.leads, 1)).strip()} overall"
        )


if __name__ == "__main__":
    main()
