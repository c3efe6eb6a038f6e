"""The `leadsync` command: demo, sandboxes, sync, plan, reconcile, report, review and unmerge."""

import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from orchestration.runner import SyncSummary
    from orchestration.store import StateStore

app = typer.Typer(
    help="Keep one lead definition across HubSpot and Salesforce.", no_args_is_help=True
)
sandbox_app = typer.Typer(help="The local HubSpot and Salesforce emulators.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
definition_app = typer.Typer(help="The shared lead definition.", no_args_is_help=True)
app.add_typer(definition_app, name="definition")
templates_app = typer.Typer(help="The nurture templates marketers edit.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")
review_app = typer.Typer(
    help="Pairs identity resolution could not decide alone: list, accept, reject.",
    invoke_without_command=True,
)
app.add_typer(review_app, name="review")
report_app = typer.Typer(help="Reports over the stage ledger: the funnel.", no_args_is_help=True)
app.add_typer(report_app, name="report")

console = Console()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")]
SizeOpt = Annotated[int, typer.Option("--size", help="People to seed the sandboxes with.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the data generator.")]


@app.callback()
def _setup() -> None:
    """Every command logs through one redacted, structured handler (LEADSYNC_LOG_*)."""
    from orchestration.observability import configure_logging

    configure_logging()


def _run_with_progress(title: str, **kwargs: Any) -> "SyncSummary":
    """run_sync with a progress bar of its steps on a terminal (plain run_sync otherwise)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from orchestration.runner import run_sync, sync_step_count

    if not console.is_terminal:
        return run_sync(**kwargs)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[step]}"),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(title, total=sync_step_count(), step="")

        def on_step(step: str, event: str) -> None:
            if event == "STEP_START":
                progress.update(task, step=step)
            else:
                progress.advance(task)

        return run_sync(on_step=on_step, **kwargs)


def _print_summary(title: str, summary: "SyncSummary") -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("HubSpot", justify="right")
    table.add_column("Salesforce", justify="right")
    for label, values in (
        ("records pulled", summary.records_pulled),
        ("fields planned", summary.fields_planned),
        ("fields written", summary.fields_written),
        ("rejected rows", summary.rejected_rows),
        ("API calls", summary.api_calls),
    ):
        table.add_row(label, str(values.get("hubspot", 0)), str(values.get("salesforce", 0)))
    console.print(table)
    console.print(
        f"unified leads: [bold]{summary.unified_leads}[/]   "
        f"records merged into another: [bold]{summary.merged_records}[/]   "
        f"records in quarantine: [bold]{summary.quarantined_records}[/]"
    )
    if summary.normalize:
        norm = summary.normalize
        console.print(
            f"normalised: {norm.get('mode', '?')}, "
            f"{norm.get('records_normalized', 0)} person record(s)"
        )
    if summary.identity:
        ident = summary.identity
        waiting = int(ident.get("review_pairs", 0))
        console.print(
            f"identity: {ident.get('mode', '?')} over {ident.get('records_matched', 0)} record(s), "
            f"{ident.get('newly_merged', 0)} newly merged"
            + (f", [bold]{waiting}[/] pair(s) wait for `leadsync review`" if waiting else "")
        )
    stages = "  ".join(f"{stage} {n}" for stage, n in summary.leads_by_stage.items())
    console.print(f"leads per stage: {stages}")
    top = sorted(summary.templates_chosen.items(), key=lambda kv: -kv[1])[:6]
    console.print("templates chosen: " + ", ".join(f"{t} ×{n}" for t, n in top))
    for system, refused in summary.rejections.items():
        for record_id, reason in refused.items():
            console.print(f"[red]{system} refused {escape(record_id)}[/]: {escape(reason)}")
    for note in summary.notes:
        console.print(f"[yellow]{escape(note)}[/]")
    if summary.dry_run:
        _print_plan(summary)
        console.print("[yellow]dry run: nothing was written[/]")


def _print_plan(summary: "SyncSummary") -> None:
    """What a dry run would write, per CRM and field, and what it would cost in API calls."""
    names = {"hubspot": "HubSpot", "salesforce": "Salesforce"}
    for system, fields in summary.planned_by_field.items():
        if not fields:
            continue
        table = Table(title=f"would write to {names.get(system, system)}", header_style="bold")
        table.add_column("object.field")
        table.add_column("values", justify="right")
        for name, count in sorted(fields.items(), key=lambda kv: (-kv[1], kv[0])):
            table.add_row(escape(name), str(count))
        console.print(table)
        console.print(
            f"{names.get(system, system)}: about [bold]"
            f"{summary.write_calls_estimate.get(system, 0)}[/] write call(s) (the fewest the "
            "plan can take: batches of 100 in HubSpot, 200 per Collections call or one Bulk job "
            "in Salesforce)"
        )


@app.command()
def demo(size: SizeOpt = 3000, seed: SeedOpt = 7, as_json: JsonOpt = False) -> None:
    """Start the sandboxes, run the whole pipeline twice, and show what happened."""
    from connectors.sandbox.server import Sandboxes

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="leadsync-demo-") as tmp, Sandboxes(size, seed) as box:
        os.environ.update(box.env())
        os.environ["LEADSYNC_DB_URL"] = f"sqlite:///{Path(tmp) / 'state.db'}"
        os.environ.setdefault("LEADSYNC_WRITE_MODE", "live")
        first = _run_with_progress("first sync")
        second = _run_with_progress("second sync")
    elapsed = time.monotonic() - started
    if as_json:
        print(
            json.dumps(
                {
                    "first_run": first.to_dict(),
                    "second_run": second.to_dict(),
                    "seconds": round(elapsed, 1),
                },
                ensure_ascii=False,
            )
        )
        return
    _print_summary(f"First sync ({size} people in the sandboxes)", first)
    _print_summary("Second sync (nothing changed in either CRM)", second)
    written = sum(second.fields_written.values())
    if written == 0:
        console.print("[green]The second run wrote nothing: both CRMs already hold the status.[/]")
    else:
        console.print(f"[red]The second run wrote {written} fields; expected none.[/]")
        raise typer.Exit(1)
    console.print(f"demo finished in {elapsed:.1f} s")


@sandbox_app.command("up")
def sandbox_up(
    size: SizeOpt = 3000, seed: SeedOpt = 7, hubspot_port: int = 8081, salesforce_port: int = 8443
) -> None:
    """Serve both sandboxes until interrupted; prints `export` lines for `eval`."""
    from connectors.sandbox.server import Sandboxes

    workdir = Path(tempfile.mkdtemp(prefix="leadsync-sandbox-"))
    box = Sandboxes(
        size, seed, hubspot_port=hubspot_port, salesforce_port=salesforce_port, workdir=workdir
    ).start()
    print(box.export_lines(), flush=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        box.stop()


@app.command()
def sync(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan, but write nothing.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Ignore cursors: pull everything.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the sync job once against the CRMs the environment points at."""

    summary = _run_with_progress("sync", dry_run=dry_run or None, full=full)
    if as_json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        _print_summary("leadsync sync", summary)
    if not summary.success:
        raise typer.Exit(1)


@app.command()
def plan(as_json: JsonOpt = False) -> None:
    """Pull and compute everything, then show what a sync would write (writes nothing)."""

    summary = _run_with_progress("plan", dry_run=True)
    if as_json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        _print_summary("leadsync plan (dry run)", summary)


@app.command()
def reconcile(as_json: JsonOpt = False) -> None:
    """Compare every pulled object with its CRM by id and stamp, re-fetch what the store missed.

    Exits 1 when a gap was found (after healing it): a gap means an incremental pull missed a
    change, which someone should know about.
    """
    from orchestration.runner import run_reconcile

    summary = run_reconcile()
    if as_json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        table = Table(title="leadsync reconcile", show_header=True, header_style="bold")
        for column in ("object", "in CRM", "stored", "missing", "stale", "gone", "pending"):
            table.add_column(column, justify="left" if column == "object" else "right")
        for name, m in summary.objects.items():
            table.add_row(
                name,
                *(
                    str(m.get(k, 0))
                    for k in (
                        "crm_records",
                        "stored_live_records",
                        "missing",
                        "stale",
                        "gone_from_crm",
                        "pending_for_next_pull",
                    )
                ),
            )
        console.print(table)
        if summary.total_gaps:
            console.print(
                f"[bold red]{summary.total_gaps} gap(s) found[/]: the missed records were "
                "re-fetched into the store; the next sync carries them downstream"
            )
        else:
            console.print("[green]no gaps: the store matches both CRMs[/]")
    if not summary.success or summary.total_gaps:
        raise typer.Exit(1)


@report_app.command("funnel")
def report_funnel(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for funnel.png and funnel.md (LEADSYNC_REPORTS_DIR)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The demand waterfall by region, origin, source and cohort, with the bottleneck named."""
    from datetime import UTC, datetime

    from orchestration.defs import frames
    from orchestration.funnel.definition import DEFAULT_PATH, load_definition
    from orchestration.funnel.metrics import funnel_report
    from orchestration.funnel.stages import LEDGER_SCHEMA
    from orchestration.reports.funnel import reports_dir, stage_label, write_funnel_report
    from orchestration.store import tables

    store = _state_store()
    report = funnel_report(
        store.read_appended(tables.stage_ledger, LEDGER_SCHEMA),
        frames.read(store, "unified_leads"),
        load_definition(DEFAULT_PATH),
        datetime.now(UTC),
    )
    png, md = write_funnel_report(report, out or reports_dir())
    if as_json:
        payload = {
            "generated_at": report.generated_at.isoformat(),
            "leads": report.leads,
            "bottleneck": report.bottleneck_sentence(),
            "flows": report.flows,
            "overall": report.overall.to_dicts(),
            **{f"by_{cut}": frame.to_dicts() for cut, frame in report.cuts().items()},
            "png": str(png),
            "markdown": str(md),
        }
        print(json.dumps(payload, ensure_ascii=False, default=str))
        return
    table = Table(title=f"leadsync report funnel: {report.leads} leads", header_style="bold")
    for column in ("stage", "reached", "conv.", "median days", "in stage", "recycled", "DQ"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for r in report.overall.to_dicts():
        conversion, days = r["conversion_from_previous"], r["median_days_in_stage"]
        table.add_row(
            stage_label(r["stage"]),
            str(r["reached"]),
            "" if conversion is None else f"{conversion:.1%}",
            "" if days is None else f"{days:.1f}",
            str(r["in_stage_now"]),
            str(r["recycled"]),
            str(r["disqualified"]),
        )
    console.print(table)
    for cut, frame in report.cuts().items():
        cut_table = Table(title=f"by {cut}", header_style="bold")
        cut_table.add_column(cut)
        stages = frame["stage"].unique(maintain_order=True).to_list()
        for stage in stages:
            cut_table.add_column(stage_label(stage), justify="right")
        for (segment,), part in frame.group_by("segment", maintain_order=True):
            cut_table.add_row(escape(str(segment)), *(str(n) for n in part["reached"]))
        console.print(cut_table)
    flows = report.flows
    console.print(
        f"marketing-generated [bold]{flows['marketing_generated']}[/]   "
        f"sales-generated [bold]{flows['sales_generated']}[/]   "
        f"recycled [bold]{flows['recycled']}[/]   reopened [bold]{flows['reopened']}[/]   "
        f"disqualified [bold]{flows['disqualified']}[/]"
    )
    console.print(f"[bold]{escape(report.bottleneck_sentence())}[/]")
    console.print(f"wrote {escape(str(png))} and {escape(str(md))}")


@definition_app.command("validate")
def definition_validate(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="The definition folder, its global.yaml or one of its regional overlays "
            "(default lead_definition/global.yaml)."
        ),
    ] = None,
) -> None:
    """Check the global lead definition and every regional overlay next to it; print every
    problem of every file with its line and key."""
    from orchestration.funnel.definition import DEFAULT_PATH, check_definition

    definition, problems = check_definition(path or DEFAULT_PATH)
    if definition is None:
        for problem in problems:
            console.print(f"[red]{escape(str(problem))}[/]", highlight=False, soft_wrap=True)
        files = len({p.path for p in problems})
        console.print(f"{len(problems)} problem(s) in {files} file(s)")
        raise typer.Exit(1)
    console.print(f"ok: {definition.source_path} (version {definition.version})", highlight=False)
    if not definition.regions:
        console.print("no regional overlays: every lead follows the global rules")
        return
    for code, overlay in sorted(definition.regions.items()):
        console.print(
            f"region {code}: countries {', '.join(overlay.countries)}; "
            f"locales {', '.join(overlay.locales)}; "
            f"{overlay.source_path} (version {overlay.version})",
            highlight=False,
            soft_wrap=True,
        )
    console.print("leads from any other country follow the global rules", highlight=False)


@definition_app.command("impact")
def definition_impact(
    proposed: Annotated[
        Path, typer.Argument(help="The proposed global.yaml (or its folder, with regions/).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """How many leads would change stage, temperature band or MQL status, per region, if the
    proposed definition replaced the current one. Reads the store; writes nothing."""
    from datetime import UTC, datetime

    from orchestration.defs import frames
    from orchestration.funnel.definition import DefinitionError, load_definition
    from orchestration.funnel.impact import definition_impact as impact_of

    path = proposed / "global.yaml" if proposed.is_dir() else proposed
    try:
        current_def, proposed_def = load_definition(), load_definition(path)
    except DefinitionError as exc:
        for problem in exc.problems:
            console.print(f"[red]{escape(str(problem))}[/]")
        raise typer.Exit(1) from exc
    store = _state_store()
    unified = frames.read(store, "unified_leads")
    if unified.height == 0:
        console.print("[red]the store has no unified leads yet[/]: run a sync first")
        raise typer.Exit(1)
    stored = frames.read(store, "stages")
    # The same clock as the scores asset: decay moves daily.
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    impact = impact_of(
        unified,
        frames.read(store, "activities"),
        stored if stored.height else None,
        current_def,
        proposed_def,
        now=now,
    )
    if as_json:
        print(
            json.dumps(
                {
                    "current_version": current_def.version,
                    "proposed_version": proposed_def.version,
                    "totals": impact.totals(),
                    "by_region": impact.by_region.to_dicts(),
                    "stage_moves": impact.stage_moves.to_dicts(),
                },
                ensure_ascii=False,
            )
        )
        return
    table = Table(
        title=f"definition impact: {current_def.version} -> {proposed_def.version}",
        header_style="bold",
    )
    for column in impact.by_region.columns:
        table.add_column(
            column.replace("_", " "), justify="left" if column == "region" else "right"
        )
    for row in impact.by_region.iter_rows():
        table.add_row(*(str(v) for v in row))
    console.print(table)
    for move in impact.stage_moves.head(10).iter_rows(named=True):
        console.print(f"  {move['from_stage']} -> {move['to_stage']}: {move['leads']}")


@definition_app.command("backtest")
def definition_backtest(
    proposed: Annotated[
        Path | None,
        typer.Argument(
            help="A proposed global.yaml (or its folder, with regions/) to compare with the "
            "current definition; without it, backtest the current one."
        ),
    ] = None,
    size: Annotated[int, typer.Option("--size", help="People to generate.")] = 3000,
    seed: SeedOpt = 7,
    as_json: JsonOpt = False,
) -> None:
    """Backtest the score against the sandbox generator's outcomes: conversion to opportunity and
    win per temperature band and score decile, and the AUC of the score for each. Runs the
    worker's steps in process on generated data (sales-side activity left out of the score, see
    orchestration/funnel/backtest.py); reads no store, calls no CRM."""
    from orchestration import backtest_run
    from orchestration.funnel.backtest import Backtest
    from orchestration.funnel.definition import DefinitionError, load_definition

    try:
        current_def = load_definition()
        proposed_def = None
        if proposed is not None:
            proposed_def = load_definition(
                proposed / "global.yaml" if proposed.is_dir() else proposed
            )
    except DefinitionError as exc:
        for problem in exc.problems:
            console.print(f"[red]{escape(str(problem))}[/]")
        raise typer.Exit(1) from exc
    data = backtest_run.load_data(current_def, size=size, seed=seed)
    comparison = None
    if proposed_def is None:
        current = backtest_run.run(data, current_def)
    else:
        comparison = backtest_run.run_comparison(data, current_def, proposed_def)
        current = comparison.current
    if as_json:
        body = comparison.to_dict() if comparison else {"current": current.to_dict()}
        print(json.dumps({"data": data.describe(), **body}, ensure_ascii=False))
        return

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    def pts(value: float | None) -> str:  # a difference of two rates, in percentage points
        return "n/a" if value is None else f"{100 * value:+.1f} pt"

    def auc(value: float | None, signed: bool = False) -> str:
        return "n/a" if value is None else f"{value:+.3f}" if signed else f"{value:.3f}"

    facts = data.describe()
    console.print(
        f"{size} generated people (seed {seed}): {facts['unified_leads']} unified leads, "
        f"{facts['opportunity_leads']} became opportunities, {facts['won_leads']} won",
        highlight=False,
    )

    def single(result: Backtest) -> None:
        for key, frame in (("band", result.bands), ("decile", result.deciles)):
            table = Table(title=f"backtest {result.version}: by {key}", header_style="bold")
            for column in (key, "scores", "leads", "opps", "opp rate", "wins", "win rate"):
                if column != "scores" or key == "decile":
                    table.add_column(column, justify="left" if column == key else "right")
            for row in frame.iter_rows(named=True):
                cells = [str(row[key])]
                if key == "decile":
                    cells.append(f"{row['score_min']}..{row['score_max']}")
                cells += [str(row["leads"]), str(row["opportunities"])]
                cells += [pct(row["opportunity_rate"]), str(row["wins"]), pct(row["win_rate"])]
                table.add_row(*cells)
            console.print(table)
        console.print(
            f"AUC: opportunity [bold]{auc(result.auc_opportunity)}[/], "
            f"win [bold]{auc(result.auc_win)}[/]"
        )

    if comparison is None:
        single(current)
        return
    title = f"{comparison.current.version} -> {comparison.proposed.version}"
    for key, frame in (("band", comparison.bands), ("decile", comparison.deciles)):
        table = Table(title=f"backtest {title}: by {key} (current, proposed)", header_style="bold")
        table.add_column(key)
        for column in ("leads", "opp rate", "proposed", "Δ opp", "win rate", "proposed ", "Δ win"):
            table.add_column(column, justify="right")
        for row in frame.iter_rows(named=True):
            table.add_row(
                str(row[key]),
                f"{row['leads_current'] or 0} -> {row['leads_proposed'] or 0}",
                pct(row["opportunity_rate_current"]),
                pct(row["opportunity_rate_proposed"]),
                pts(row["opportunity_rate_delta"]),
                pct(row["win_rate_current"]),
                pct(row["win_rate_proposed"]),
                pts(row["win_rate_delta"]),
            )
        console.print(table)
    table = Table(title=f"AUC {title}", header_style="bold")
    for column in ("outcome", "current", "proposed", "Δ"):
        table.add_column(column, justify="left" if column == "outcome" else "right")
    for metric, cur, pro, delta in comparison.auc.iter_rows():
        table.add_row(metric, auc(cur), auc(pro), auc(delta, signed=True))
    console.print(table)


@templates_app.command("lint")
def templates_lint(
    root: Annotated[
        Path | None, typer.Argument(help="Templates folder (default nurture_templates/).")
    ] = None,
) -> None:
    """Check every template: front matter, syntax, variables, unsubscribe link, coverage."""
    from orchestration.defs.resources import PROJECT_ROOT
    from orchestration.funnel.definition import ALL_STAGES
    from orchestration.funnel.nurture.lint import lint_templates

    folder = root or PROJECT_ROOT / "nurture_templates"
    stages = [s for s in ALL_STAGES if s != "Disqualified"]  # disqualified leads get no nurture
    problems = lint_templates(folder, stages=stages)
    for problem in problems:
        colour = "red" if problem.severity == "error" else "yellow"
        text = escape(f"{folder}/{problem}")  # "[syntax]" is not rich markup
        console.print(f"[{colour}]{text}[/]", highlight=False, soft_wrap=True)
    errors = sum(p.severity == "error" for p in problems)
    console.print(f"{errors} error(s), {len(problems) - errors} warning(s) in {folder}")
    if errors:
        raise typer.Exit(1)


@templates_app.command("preview")
def templates_preview(
    root: Annotated[
        Path | None, typer.Argument(help="Templates folder (default nurture_templates/).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Gallery folder (default .leadsync/preview/)."),
    ] = None,
    synthetic: Annotated[
        bool,
        typer.Option("--synthetic", help="Synthetic samples only; do not read the store."),
    ] = False,
) -> None:
    """Render every template for sample leads of each stage and region into an HTML gallery.

    Samples are masked real leads from the state store where it has one for a (stage, region),
    synthetic leads elsewhere. Exits 1 when any render fails (the gallery shows the errors).
    """
    from orchestration.defs import frames
    from orchestration.defs.resources import PROJECT_ROOT
    from orchestration.funnel.definition import load_definition
    from orchestration.funnel.nurture.preview import build_gallery, samples_from_leads
    from orchestration.funnel.nurture.templates import TemplateError, load_templates

    folder = root or PROJECT_ROOT / "nurture_templates"
    target = out or Path(".leadsync/preview")
    definition = load_definition()
    try:
        catalogue = load_templates(folder)
    except TemplateError as exc:
        console.print(f"[red]{escape(str(exc))}[/] (run `leadsync templates lint`)")
        raise typer.Exit(1) from exc
    samples = None
    if not synthetic:
        store = _state_store()
        leads = (
            frames.read(store, "unified_leads")
            .join(frames.read(store, "stages"), on="unified_id", how="inner")
            .join(frames.read(store, "scores"), on="unified_id", how="inner")
        )
        samples = samples_from_leads(leads, definition)
    gallery = build_gallery(catalogue, folder, target, definition, samples=samples)
    for failed in gallery.errors:
        text = escape(f"{failed.template.name} [{failed.sample.label}]: {failed.error}")
        console.print(f"[red]{text}[/]", highlight=False, soft_wrap=True)
    console.print(
        f"{len(gallery.renders)} renders of {len(catalogue)} templates, "
        f"{len(gallery.errors)} error(s): {gallery.index.resolve().as_uri()}"
    )
    if gallery.errors:
        raise typer.Exit(1)


# --------------------------------------------------------------------------------------------
# Identity: review and unmerge
# --------------------------------------------------------------------------------------------

ByOpt = Annotated[
    str,
    typer.Option("--by", help="Who decides (kept in the audit trail).", envvar="LEADSYNC_USER"),
]
NoteOpt = Annotated[str | None, typer.Option("--note", help="Why, for the audit trail.")]


def _state_store() -> "StateStore":
    """The store the sync uses: LEADSYNC_DB_URL, else the local SQLite file."""
    from orchestration.store import DEFAULT_DB_URL, StateStore

    return StateStore(os.environ.get("LEADSYNC_DB_URL") or DEFAULT_DB_URL)


def _decide(record_a: str, record_b: str, decision: str, by: str, note: str | None) -> None:
    from datetime import UTC, datetime

    from orchestration.defs import frames
    from orchestration.store import tables

    store = _state_store()
    known = set(frames.read(store, "identity")["record_id"].to_list())
    unknown = [r for r in (record_a, record_b) if r not in known]
    if unknown:
        console.print(f"[red]unknown record(s): {', '.join(unknown)}[/] (run a sync first?)")
        raise typer.Exit(1)
    if record_a == record_b:
        console.print("[red]a record cannot be paired with itself[/]")
        raise typer.Exit(1)
    store.append(
        tables.identity_decisions,
        [
            {
                "record_a": record_a,
                "record_b": record_b,
                "decision": decision,
                "decided_by": by,
                "decided_at": datetime.now(UTC),
                "note": note,
            }
        ],
    )
    console.print(f"{decision}ed {escape(record_a)} ~ {escape(record_b)}: applied on the next sync")


@review_app.callback()
def review_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", help="Most pairs to show.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List the pairs waiting for a person, strongest first, with both records side by side."""
    if ctx.invoked_subcommand is not None:
        return
    import polars as pl

    from orchestration.defs import frames
    from orchestration.defs.leads import identity_decisions

    store = _state_store()
    pairs = frames.read(store, "identity_pairs").filter(pl.col("band") == "review")
    decided = identity_decisions(store)
    if decided.height:
        keys = decided.select(
            pl.min_horizontal("record_a", "record_b").alias("record_a"),
            pl.max_horizontal("record_a", "record_b").alias("record_b"),
        )
        pairs = pairs.join(keys, on=["record_a", "record_b"], how="anti")
    pairs = pairs.sort("match_weight", descending=True)
    leads = frames.read(store, "leads_normalized").select(
        "record_id", "first_name", "last_name", "email", "company", "phone"
    )
    shown = pairs.head(limit)
    if as_json:
        print(json.dumps({"pending": pairs.height, "pairs": shown.to_dicts()}, default=str))
        return
    people = {r["record_id"]: r for r in leads.to_dicts()}

    def who(record_id: str) -> str:
        r = people.get(record_id, {})
        name = " ".join(p for p in (r.get("last_name"), r.get("first_name")) if p)
        parts = [name, r.get("email"), r.get("company"), r.get("phone")]
        return escape(" / ".join(p for p in parts if p) or "?")

    table = Table(title=f"leadsync review: {pairs.height} pair(s) pending", header_style="bold")
    for column in ("record a", "record b", "weight", "agrees on"):
        table.add_column(column)
    for row in shown.to_dicts():
        agrees = ", ".join(
            f"{c}={row[f'{c}_level']}" for c in ("name", "email", "company", "phone")
        )
        table.add_row(
            f"{escape(row['record_a'])}\n{who(row['record_a'])}",
            f"{escape(row['record_b'])}\n{who(row['record_b'])}",
            f"{row['match_weight']:.1f}",
            agrees,
        )
    console.print(table)
    console.print("accept: leadsync review accept A B    reject: leadsync review reject A B")


@review_app.command("accept")
def review_accept(record_a: str, record_b: str, by: ByOpt = "cli", note: NoteOpt = None) -> None:
    """The two records are one person: merge them on the next sync."""
    _decide(record_a, record_b, "accept", by, note)


@review_app.command("reject")
def review_reject(record_a: str, record_b: str, by: ByOpt = "cli", note: NoteOpt = None) -> None:
    """The two records are different people: never merge them (a cannot-link)."""
    _decide(record_a, record_b, "reject", by, note)


@app.command()
def unmerge(
    unified_id: Annotated[str, typer.Argument(help="The unified lead to split.")],
    records: Annotated[list[str], typer.Argument(help="Record ids to split off it.")],
    by: ByOpt = "cli",
    note: NoteOpt = None,
) -> None:
    """Split records off a unified lead and remember they are different people."""
    import polars as pl

    from orchestration.defs import frames
    from orchestration.funnel.identity import split_decisions
    from orchestration.store import tables

    store = _state_store()
    assignments = frames.read(store, "identity")
    try:
        decisions = split_decisions(assignments, unified_id, records, decided_by=by, note=note)
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from exc
    from datetime import UTC, datetime

    rows = [{**r, "decided_at": datetime.now(UTC)} for r in decisions.to_dicts()]
    store.append(tables.identity_decisions, rows)
    hard = frames.read(store, "identity_pairs").filter(
        (pl.col("rule") == "hard_link")
        & (pl.col("record_a").is_in(records) | pl.col("record_b").is_in(records))
    )
    console.print(
        f"split {len(records)} record(s) off {escape(unified_id)} "
        f"({len(rows)} cannot-link pair(s) recorded): applied on the next sync"
    )
    if hard.height:
        console.print(
            "[yellow]note:[/] some of these records are linked by the CRMs themselves "
            "(converted lead, merge, connector id); those links are facts and stay merged"
        )


# --------------------------------------------------------------------------------------------
# Explain: why a lead scores and stands where it does
# --------------------------------------------------------------------------------------------

if TYPE_CHECKING:
    from orchestration.funnel.explain import Explanation


@app.command()
def explain(
    key: Annotated[str, typer.Argument(help="An email, a record id or a unified id (UL-...).")],
    top: Annotated[int, typer.Option("--top", help="Most contributions to show.")] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the explanation as one JSON object.")
    ] = False,
) -> None:
    """Show a lead's score contributions (as earned and decayed), stage history and next content.

    An email shared by several unified leads explains the most recently updated one and lists the
    others. Exits 1 when nothing matches.
    """
    from orchestration.defs import frames
    from orchestration.funnel import explain as explaining
    from orchestration.funnel.definition import load_definition
    from orchestration.funnel.stages import LEDGER_SCHEMA
    from orchestration.store import tables

    store = _state_store()
    try:
        regions = load_definition().country_regions()
    except Exception:
        # A broken definition only costs the region name; it must not hide what the store knows.
        regions = {}
    found = explaining.explain(
        key,
        leads=frames.read(store, "leads_normalized"),
        identity=frames.read(store, "identity"),
        unified=frames.read(store, "unified_leads"),
        scores=frames.read(store, "scores"),
        stages=frames.read(store, "stages"),
        ledger=store.read_appended(tables.stage_ledger, LEDGER_SCHEMA),
        assignments=frames.read(store, "nurture_assignments"),
        country_regions=regions,
    )
    if found is None:
        console.print(
            f"[red]no lead matches {escape(key)!r}[/]: give an email, a record id "
            "(hubspot:contacts:123) or a unified id (UL-...); run a sync first?",
            highlight=False,
        )
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(found.to_dict(), ensure_ascii=False))
        return
    _print_explanation(found, top)


def _print_explanation(found: "Explanation", top: int) -> None:
    def text(value: object) -> str:
        return "" if value is None else escape(str(value))

    where = ", ".join(p for p in (found.country, found.region and f"region {found.region}") if p)
    console.print(
        f"[bold]{text(found.name) or '(no name)'}[/] <{text(found.email)}> "
        f"{text(found.company)}{f' ({where})' if where else ''}  [dim]{found.unified_id}[/]",
        highlight=False,
    )
    if found.score is None:
        console.print("not scored yet", highlight=False)
    else:
        # Negatives are applied after the engagement floor, so they are what the two parts leave.
        negatives = found.score - (found.fit_score or 0) - (found.engagement_score or 0)
        console.print(
            f"score [bold]{found.score}[/] = fit {found.fit_score} + engagement "
            f"{found.engagement_score} + negatives {negatives}: {text(found.temperature)}"
            f"{', hand-raise' if found.hand_raise else ''}",
            highlight=False,
        )
    since = found.stage_entered_at
    console.print(
        f"stage [bold]{text(found.stage) or 'none yet'}[/]"
        + (f" since {since:%Y-%m-%d %H:%M}" if since else ""),
        highlight=False,
    )
    console.print(
        "records: " + ", ".join(escape(m.record_id) for m in found.members), highlight=False
    )
    table = Table(title="contributions", header_style="bold")
    for column in ("source", "earned", "now", "age (days)", "half-life", "events"):
        table.add_column(column, justify="left" if column == "source" else "right")

    def num(value: float | int | None, digits: int = 1) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for c in found.contributions[:top]:
        table.add_row(
            escape(c.source),
            num(c.points),
            num(c.decayed),
            num(c.age_days),
            num(c.half_life_days, 0),
            "" if c.events is None else str(c.events),
        )
    console.print(table)
    if len(found.contributions) > top:
        console.print(f"… and {len(found.contributions) - top} smaller contribution(s)")
    history = Table(title="stage history", header_style="bold")
    for column in ("at", "from", "to", "rule", "reason", "definition"):
        history.add_column(column)
    for t in found.history:
        history.add_row(
            text(t.at and t.at.strftime("%Y-%m-%d %H:%M")),
            text(t.from_stage) or "-",
            text(t.to_stage),
            text(t.rule),
            text(t.reason),
            text(t.definition_version),
        )
    console.print(history)
    nxt = found.next_content
    if nxt is None:
        console.print("next content: none assigned yet")
    elif nxt.template_id:
        console.print(
            f"next content: [bold]{text(nxt.template_id)}[/] ({text(nxt.channel)}, "
            f'{text(nxt.locale)}) "{text(nxt.subject)}": {text(nxt.why)}'
            + (f"; due {nxt.due_at:%Y-%m-%d}" if nxt.due_at else ""),
            highlight=False,
        )
    else:
        console.print(f"next content: {text(nxt.status)} ({text(nxt.why)})", highlight=False)
    if found.other_matches:
        console.print(
            "[yellow]this email also matches[/] "
            + ", ".join(found.other_matches)
            + ": `leadsync explain <id>` for each",
            highlight=False,
        )


if __name__ == "__main__":
    app()
