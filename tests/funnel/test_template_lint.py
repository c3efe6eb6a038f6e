"""Template lint: the shipped templates are clean; each kind of breakage is reported on its own."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from orchestration.funnel.definition import load_definition
from orchestration.funnel.nurture.lint import LintProblem, lint_templates

ROOT = Path(__file__).resolve().parents[2] / "nurture_templates"


@pytest.fixture(scope="module")
def stages() -> list[str]:
    return [s.name for s in load_definition().stages] + ["Recycled"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "nurture_templates"
    shutil.copytree(ROOT, root)
    return root


def write(root: Path, rel: str, text: str) -> None:
    (root / rel).write_text(text.lstrip("\n"), encoding="utf-8")


def front(tid: str, stage: str, *extra: str) -> str:
    lines = ["---", f"id: {tid}", f"stages: [{stage}]", "locale: en", 'subject: "Hi"', "version: 1"]
    return "\n".join([*lines, *extra, "---", ""])


def errors(problems: list[LintProblem]) -> list[LintProblem]:
    return [p for p in problems if p.severity == "error"]


def test_shipped_templates_have_no_errors(stages: list[str]) -> None:
    problems = lint_templates(ROOT, stages=stages)
    assert errors(problems) == [], "\n".join(map(str, problems))


def test_one_broken_file_per_check(tree: Path, stages: list[str]) -> None:
    # syntax: an `if` without a condition on line 10.
    write(
        tree,
        "en/MQL/lint-syntax.html.j2",
        front("lint-syntax", "MQL")
        + '{% extends "_layout/email.html.j2" %}\n'
        + "{% block content %}\n"
        + "<p>{% if %}yes{% endif %}</p>\n"
        + "{% endblock %}\n",
    )
    # unknown-variable on line 9 (not also a render error: static problems skip the render).
    write(
        tree,
        "en/SAL/lint-unknown.txt.j2",
        front("lint-unknown", "SAL")
        + '{% extends "_layout/email.txt.j2" %}\n'
        + "{% block content %}\n"
        + "Use code {{ discount_code }}.\n"
        + "{% endblock %}\n",
    )
    # unsubscribe: no layout, no unsubscribe link of its own.
    write(
        tree,
        "en/SQL/lint-no-unsubscribe.txt.j2",
        front("lint-no-unsubscribe", "SQL") + "Hi {{ lead.first_name }}: {{ links.content_url }}\n",
    )
    # front-matter: a misspelt key on line 7.
    write(
        tree,
        "en/Customer/lint-bad-meta.html.j2",
        front("lint-bad-meta", "Customer", "priorty: 5")
        + '{% extends "_layout/email.html.j2" %}\n{% block content %}x{% endblock %}\n',
    )
    # coverage: no en template for Lead left (its ja translations now name unknown templates).
    for path in (tree / "en" / "Lead").glob("*.j2"):
        path.unlink()

    problems = lint_templates(tree, stages=stages)
    found = {(p.path, p.code, p.line) for p in errors(problems)}
    assert found == {
        ("en/MQL/lint-syntax.html.j2", "syntax", 10),
        ("en/SAL/lint-unknown.txt.j2", "unknown-variable", 10),
        ("en/SQL/lint-no-unsubscribe.txt.j2", "unsubscribe", None),
        ("en/Customer/lint-bad-meta.html.j2", "front-matter", 7),
        ("en/Lead", "coverage", None),
        ("ja/Lead/lead-data-checklist-ja.txt.j2", "front-matter", 11),
        ("ja/Lead/lead-industry-trends-ja.html.j2", "front-matter", 11),
    }, "\n".join(map(str, problems))
    messages = {p.path: p.message for p in problems}
    assert "discount_code" in messages["en/SAL/lint-unknown.txt.j2"]
    assert "priorty" in messages["en/Customer/lint-bad-meta.html.j2"]
    assert [(p.path, p.line or 0) for p in problems] == sorted(
        (p.path, p.line or 0) for p in problems
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        problems[0].code = "x"  # type: ignore[misc]


def test_render_errors_field_typos_warnings(tree: Path, stages: list[str]) -> None:
    # A field the context has no sub-field for, and a runtime failure (StrictUndefined).
    write(
        tree,
        "en/MQL/lint-typo.html.j2",
        front("lint-typo", "MQL")
        + '{% extends "_layout/email.html.j2" %}\n'
        + "{% block content %}{{ lead.compnay }}{% endblock %}\n",
    )
    write(
        tree,
        "en/SAL/lint-render.txt.j2",
        front("lint-render", "SAL")
        + '{% extends "_layout/email.txt.j2" %}\n'
        + "{% block content %}\n"
        + "{{ lead.first_name.nope }}\n"
        + "{% endblock %}\n",
    )
    # A stale translation and a ja stage with no content (falls back to en): warnings only.
    source = tree / "en/MQL/mql-case-study.html.j2"
    source.write_text(
        source.read_text(encoding="utf-8").replace("version: 1", "version: 2"), encoding="utf-8"
    )
    for path in (tree / "ja" / "SAL").glob("*.j2"):
        path.unlink()

    problems = lint_templates(tree, stages=stages)
    found = {(p.path, p.code, p.severity, p.line) for p in problems}
    assert found == {
        ("en/MQL/lint-typo.html.j2", "unknown-variable", "error", 9),
        ("en/SAL/lint-render.txt.j2", "render", "error", 10),
        ("ja/MQL/mql-case-study-ja.html.j2", "stale-translation", "warning", 11),
        ("ja/SAL", "coverage", "warning", None),
    }, "\n".join(map(str, problems))
    messages = {p.code: p.message for p in problems}
    assert "lead.compnay" in messages["unknown-variable"]
    assert "UndefinedError" in messages["render"]
    assert "falls back to en" in messages["coverage"]
