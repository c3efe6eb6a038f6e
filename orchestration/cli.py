"""The `leadsync` command: demo, sandboxes, sync and plan."""

import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from orchestration.runner import SyncSummary

app = typer.Typer(
    help="Keep one lead definition across HubSpot and Salesforce.", no_args_is_help=True
)
sandbox_app = typer.Typer(help="The local HubSpot and Salesforce emulators.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
definition_app = typer.Typer(help="The shared lead definition.", no_args_is_help=True)
app.add_typer(definition_app, name="definition")
templates_app = typer.Typer(help="The nurture templates marketers edit.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")

console = Console()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")]
SizeOpt = Annotated[int, typer.Option("--size", help="People to seed the sandboxes with.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the data generator.")]


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
        console.print("[yellow]dry run: nothing was written[/]")


@app.command()
def demo(size: SizeOpt = 3000, seed: SeedOpt = 7, as_json: JsonOpt = False) -> None:
    """Start the sandboxes, run the whole pipeline twice, and show what happened."""
    from connectors.sandbox.server import Sandboxes
    from orchestration.runner import run_sync

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="leadsync-demo-") as tmp, Sandboxes(size, seed) as box:
        os.environ.update(box.env())
        os.environ["LEADSYNC_DB_URL"] = f"sqlite:///{Path(tmp) / 'state.db'}"
        os.environ.setdefault("LEADSYNC_WRITE_MODE", "live")
        first = run_sync()
        second = run_sync()
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
    from orchestration.runner import run_sync

    summary = run_sync(dry_run=dry_run or None, full=full)
    if as_json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        _print_summary("leadsync sync", summary)
    if not summary.success:
        raise typer.Exit(1)


@app.command()
def plan(as_json: JsonOpt = False) -> None:
    """Pull and compute everything, then show what a sync would write (writes nothing)."""
    from orchestration.runner import run_sync

    summary = run_sync(dry_run=True)
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


@definition_app.command("validate")
def definition_validate(
    path: Annotated[
        Path | None, typer.Argument(help="Definition file (default lead_definition/global.yaml).")
    ] = None,
) -> None:
    """Check a lead definition; print every problem with its file, line and key."""
    from orchestration.funnel.definition import DEFAULT_PATH, DefinitionError, load_definition

    try:
        definition = load_definition(path or DEFAULT_PATH)
    except DefinitionError as exc:
        for problem in exc.problems:
            console.print(f"[red]{escape(str(problem))}[/]", highlight=False, soft_wrap=True)
        console.print(f"{len(exc.problems)} problem(s)")
        raise typer.Exit(1) from exc
    console.print(f"ok: {definition.source_path} (version {definition.version})", highlight=False)


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


if __name__ == "__main__":
    app()
