"""Changing a template re-renders exactly the leads it affects on the next run, and no others."""

import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from orchestration.funnel.definition import LeadDefinition, load_definition
from orchestration.funnel.nurture import (
    Links,
    Template,
    load_templates,
    make_environment,
    render_assignments,
    select_next,
)
from orchestration.funnel.nurture.select import HISTORY_SCHEMA as SELECT_HISTORY

STARTER = Path(__file__).resolve().parents[2] / "nurture_templates"
NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)

# Two MQL leads (same template), a SAL lead, a Customer lead and a Japanese MQL lead.
LEADS = pl.DataFrame(
    {
        "unified_id": ["m1", "m2", "s1", "c1", "j1"],
        "stage": ["MQL", "MQL", "SAL", "Customer", "MQL"],
        "score": [85, 90, 95, 120, 85],
        "temperature": ["hot"] * 5,
        "locale": ["en", "en", "en", "en", "ja"],
        "first_name": ["Ann", "Bob", "Cy", "Di", "花子"],
        "last_name": ["Lee", "Ray", "Fox", "Orr", "山田"],
        "company": ["Acme", "Beta", "Cato", "Dune", "サンプル"],
        "title": ["CMO"] * 5,
    }
)


# The Customer lead has had the onboarding email, so it holds the (text) advanced-features one.
HISTORY = pl.DataFrame(
    {
        "unified_id": ["c1"],
        "template_id": ["customer-onboarding"],
        "sent_at": [datetime(2025, 5, 1, tzinfo=UTC)],
    },
    schema=SELECT_HISTORY,
)


@pytest.fixture(scope="module")
def definition() -> LeadDefinition:
    return load_definition()


class Run:
    """One nurture run over a template folder: select, then render with `previous`."""

    def __init__(self, root: Path, definition: LeadDefinition) -> None:
        self.root = root
        self.definition = definition
        self.rendered: list[str] = []

    def __call__(self, leads: pl.DataFrame, previous: pl.DataFrame | None) -> pl.DataFrame:
        self.rendered = []
        catalogue = load_templates(self.root)
        env = make_environment(self.root)  # fresh, as every asset run builds its own

        def links(uid: str, template: Template) -> Links:
            self.rendered.append(uid)  # called once per lead actually rendered
            return Links(unsubscribe_url=f"https://x.test/u/{uid}", content_url="https://x.test")

        chosen = select_next(leads, catalogue, HISTORY, self.definition, now=NOW)
        return render_assignments(chosen, leads, catalogue, env, links=links, previous=previous)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_template_edits_rerender_only_affected_leads(
    tmp_path: Path, definition: LeadDefinition
) -> None:
    root = tmp_path / "nurture_templates"
    shutil.copytree(STARTER, root)
    run = Run(root, definition)

    first = run(LEADS, None)
    assert sorted(run.rendered) == ["c1", "j1", "m1", "m2", "s1"]
    held = dict(zip(first["unified_id"], first["template_id"], strict=True))
    assert held["m1"] == held["m2"]
    assert first["render_key"].null_count() == 0

    # Nothing changed: nothing is rendered.
    again = run(LEADS, first)
    assert run.rendered == []
    assert again["body"].to_list() == first["body"].to_list()

    # The MQL template's body edited without a version bump: its two leads, nobody else.
    mql = next(t for t in load_templates(root) if t.id == held["m1"])
    _edit(mql.path, "{% block content %}", "{% block content %}<p>NEW PARAGRAPH</p>")
    edited = run(LEADS, again)
    assert sorted(run.rendered) == ["m1", "m2"]
    bodies = dict(zip(edited["unified_id"], edited["body"], strict=True))
    assert "NEW PARAGRAPH" in bodies["m1"] and "NEW PARAGRAPH" in bodies["m2"]
    assert bodies["s1"] == dict(zip(again["unified_id"], again["body"], strict=True))["s1"]

    # A subject edit counts too.
    _edit(mql.path, 'subject: "', 'subject: "Re: ')
    subject_edit = run(LEADS, edited)
    assert sorted(run.rendered) == ["m1", "m2"]
    assert subject_edit.filter(pl.col("unified_id") == "m1")["next_subject"][0].startswith("Re: ")

    # The shared text layout: exactly the leads whose template is a .txt one.
    catalogue = {t.id: t for t in load_templates(root)}
    txt_leads = sorted(
        uid for uid, tid in held.items() if tid is not None and catalogue[tid].ext == "txt"
    )
    assert txt_leads, "the starter set should give one of these leads a text template"
    _edit(
        root / "_layout" / "email.txt.j2",
        "{{ links.unsubscribe_url }}",
        "{{ links.unsubscribe_url }} ",
    )
    layout_edit = run(LEADS, subject_edit)
    assert sorted(run.rendered) == txt_leads

    # A lead's own data (its company) re-renders that lead only.
    renamed = LEADS.with_columns(
        pl.when(pl.col("unified_id") == "s1")
        .then(pl.lit("Cato GmbH"))
        .otherwise("company")
        .alias("company")
    )
    run(renamed, layout_edit)
    assert run.rendered == ["s1"]
