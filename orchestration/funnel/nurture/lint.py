"""Linting nurture templates: every problem in the tree at once, for marketers and CI.

`lint_templates(root, stages=...)` checks each file on its own (so one bad file does not hide the
others) with the same validation and the same sandboxed environment as loading and rendering:

* `front-matter`: front matter missing, unreadable or invalid (`load_template`'s validation: also
  an unknown `wait_after.activity` or a bad `sequence`), a duplicate id, a `translation_of` naming
  no template, or a `conditions.regions` entry that is no region of the lead definition;
* `syntax`: a Jinja syntax error in the body or the subject (layouts and partials included);
* `unknown-variable`: a variable (or a field of `lead` / `links`) the render context does not have;
* `render`: rendering against a sample context for the template's first stage fails;
* `unsubscribe`: the rendered body has no unsubscribe link (the shared layouts provide one);
* `coverage`: a (stage, locale) with no active template: an error for `en`, a warning for other
  locales (they fall back to `en`);
* `stale-translation` (warning): a translation made from an older version of its `en` source.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ValidationError

from orchestration.funnel.definition import load_definition
from orchestration.funnel.nurture.render import (
    LeadContext,
    Links,
    NurtureContext,
    make_environment,
    render,
)
from orchestration.funnel.nurture.templates import (
    _TRANSLATION_RE,
    EVERGREEN_STAGE,
    GLOBAL_REGION,
    Template,
    TemplateError,
    load_template,
    stale_translations,
)

Severity = Literal["error", "warning"]

# Check codes, stable for CI filters and docs.
FRONT_MATTER = "front-matter"
SYNTAX = "syntax"
UNKNOWN_VARIABLE = "unknown-variable"
RENDER = "render"
UNSUBSCRIBE = "unsubscribe"
COVERAGE = "coverage"
STALE_TRANSLATION = "stale-translation"

# The sample context's unsubscribe URL; the rendered body must contain it.
SAMPLE_UNSUBSCRIBE_URL = "https://lint.example.com/unsubscribe/sample-lead"


@dataclass(frozen=True)
class LintProblem:
    """One problem: `path` relative to the template root (posix), `line` 1-based when known."""

    path: str
    line: int | None
    code: str
    message: str
    severity: Severity

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.severity}: [{self.code}] {self.message}"


def _context_fields() -> dict[str, frozenset[str] | None]:
    """Top-level context names (what `render` passes: `NurtureContext.model_dump()`), each with
    its sub-fields when it is a nested model (`lead`, `links`), else None."""
    fields: dict[str, frozenset[str] | None] = {}
    for name, info in NurtureContext.model_fields.items():
        ann = info.annotation
        nested = isinstance(ann, type) and issubclass(ann, BaseModel)
        fields[name] = frozenset(ann.model_fields) if nested else None  # type: ignore[union-attr]
    return fields


CONTEXT_FIELDS = _context_fields()


def sample_context(template: Template) -> NurtureContext:
    """The context lint renders `template` with: a filled-in lead at the template's first stage."""
    return NurtureContext(
        lead=LeadContext(
            first_name="Sample",
            last_name="Lead",
            company="Example Co",
            title="Marketing Manager",
            locale=template.locale,
        ),
        stage=template.stages[0],
        score=50,
        temperature="warm",
        links=Links(
            unsubscribe_url=SAMPLE_UNSUBSCRIBE_URL,
            content_url=f"https://lint.example.com/{template.locale}/resources/{template.id}",
        ),
    )


def _key_line(text: str, key: str) -> int | None:
    """The 1-based line of `key:` in the file's front matter, if it is there."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    pattern = re.compile(rf"^{re.escape(key)}\s*:")
    for number, line in enumerate(lines[1:], start=2):
        if line.strip() == "---":
            return None
        if pattern.match(line):
            return number
    return None


def _front_matter_line(exc: TemplateError, message: str, text: str) -> int | None:
    cause = exc.__cause__
    mark = getattr(cause, "problem_mark", None) or getattr(cause, "context_mark", None)
    if mark is not None:
        # python-frontmatter hands YAML the text from the end of the opening "---" line, so
        # YAML's 0-based line is the file's 1-based line.
        return int(mark.line) + 1
    if isinstance(cause, ValidationError):
        errors = cause.errors()
        if errors and errors[0]["loc"]:
            return _key_line(text, str(errors[0]["loc"][0]))
        return 1
    if message.startswith("missing YAML front matter"):
        return 1
    for key in ("id", "locale", "stages"):
        if message.startswith(f"{key} "):
            return _key_line(text, key)
    return None


def _first_line(ast: nodes.Template, name: str, attr: str | None = None) -> int | None:
    """The first line where `name` (or `name.attr`) is read, or None."""
    lines: list[int] = []
    if attr is None:
        lines = [n.lineno for n in ast.find_all(nodes.Name) if n.name == name and n.ctx == "load"]
    else:
        for n in ast.find_all(nodes.Getattr):
            if isinstance(n.node, nodes.Name) and n.node.name == name and n.attr == attr:
                lines.append(n.lineno)
        for n in ast.find_all(nodes.Getitem):
            arg = n.arg
            if (
                isinstance(n.node, nodes.Name)
                and n.node.name == name
                and isinstance(arg, nodes.Const)
                and arg.value == attr
            ):
                lines.append(n.lineno)
    return min(lines) if lines else None


def _top_level_names(ast: nodes.Template) -> set[str]:
    """Names a template defines outside its blocks (`{% set %}`, macros, imports).

    Blocks read them from the template's context at render time, but `find_undeclared_variables`
    looks at each block on its own and would report them.
    """
    names: set[str] = set()
    for node in ast.body:
        if isinstance(node, (nodes.Assign, nodes.AssignBlock)):
            names.update(n.name for n in node.target.find_all(nodes.Name))
            if isinstance(node.target, nodes.Name):
                names.add(node.target.name)
        elif isinstance(node, nodes.Macro):
            names.add(node.name)
        elif isinstance(node, nodes.Import):
            names.add(node.target)
        elif isinstance(node, nodes.FromImport):
            names.update(n if isinstance(n, str) else n[1] for n in node.names)
    return names


def _unknown_variables(
    ast: nodes.Template, env: SandboxedEnvironment
) -> list[tuple[str, int | None]]:
    """Variables (and `lead.x` / `links.x` fields) the render context does not provide."""
    found: list[tuple[str, int | None]] = []
    known = set(CONTEXT_FIELDS) | set(env.globals) | _top_level_names(ast)
    undeclared = meta.find_undeclared_variables(ast)
    for name in sorted(undeclared - known):
        found.append((name, _first_line(ast, name)))
    # Fields of the nested models, read as `lead.x` or `lead["x"]` while `lead` is the context's.
    for name, subfields in CONTEXT_FIELDS.items():
        if subfields is None or name not in undeclared:
            continue
        attrs: set[str] = set()
        for n in ast.find_all(nodes.Getattr):
            if isinstance(n.node, nodes.Name) and n.node.name == name:
                attrs.add(n.attr)
        for n in ast.find_all(nodes.Getitem):
            if (
                isinstance(n.node, nodes.Name)
                and n.node.name == name
                and isinstance(n.arg, nodes.Const)
                and isinstance(n.arg.value, str)
            ):
                attrs.add(n.arg.value)
        for attr in sorted(attrs - subfields):
            found.append((f"{name}.{attr}", _first_line(ast, name, attr)))
    return found


def _error_line(exc: BaseException, filename: str) -> int | None:
    """The last line of `filename` in the (Jinja-rewritten) traceback of `exc`."""
    line: int | None = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == filename:
            line = lineno
    return line


def lint_templates(
    root: Path,
    *,
    stages: Sequence[str],
    locales: Sequence[str] = ("en", "ja"),
    regions: Sequence[str] | None = None,
) -> list[LintProblem]:
    """Every problem in the template tree under `root`, sorted by path then line.

    `stages` are the stages that must have content (coverage) in each of `locales`; `en` is the
    fallback locale, so a stage missing in `en` is an error and missing elsewhere a warning.
    `regions`: the region codes `conditions.regions` may name (None: the regional overlays of the
    default lead definition); "global" is always allowed.
    """
    root = Path(root)
    problems: list[LintProblem] = []

    def add(path: str, line: int | None, code: str, message: str, sev: Severity = "error") -> None:
        problems.append(LintProblem(path, line, code, message, sev))

    if not root.is_dir():
        add(str(root), None, FRONT_MATTER, "template directory not found")
        return problems

    env = make_environment(root)
    loader = env.loader
    assert loader is not None  # make_environment always sets one
    files = sorted(root.rglob("*.j2"))
    templates: list[Template] = []
    asts: dict[str, nodes.Template] = {}
    for path in files:
        name = path.relative_to(root).as_posix()
        is_template = not any(part.startswith("_") for part in path.relative_to(root).parts)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            add(name, None, FRONT_MATTER if is_template else SYNTAX, f"cannot read: {exc}")
            continue

        template: Template | None = None
        if is_template:
            try:
                template = load_template(path, root)
            except TemplateError as exc:
                message = str(exc)
                shown = f"{path.relative_to(root.parent)}: "
                message = message.removeprefix(shown)
                add(name, _front_matter_line(exc, message, text), FRONT_MATTER, message)
            else:
                templates.append(template)

        # Body: the loader strips the front matter but keeps line numbers.
        try:
            source, filename, _ = loader.get_source(env, name)
            ast = env.parse(source, name, filename)
        except TemplateSyntaxError as exc:
            add(name, exc.lineno, SYNTAX, exc.message or str(exc))
        else:
            asts[name] = ast
            for var, line in _unknown_variables(ast, env):
                add(name, line, UNKNOWN_VARIABLE, f"unknown variable {var!r}")

        if template is not None:
            subject_line = _key_line(text, "subject")
            try:
                subject_ast = env.parse(template.subject)
            except TemplateSyntaxError as exc:
                add(name, subject_line, SYNTAX, f"subject: {exc.message or exc}")
            else:
                for var, _line in _unknown_variables(subject_ast, env):
                    add(name, subject_line, UNKNOWN_VARIABLE, f"subject: unknown variable {var!r}")

    # Tree-wide front matter rules (the ones load_templates applies after the per-file ones).
    by_id: dict[str, Template] = {}
    for t in templates:
        if t.id in by_id:
            add(
                t.name,
                _key_line(t.path.read_text(encoding="utf-8"), "id"),
                FRONT_MATTER,
                f"duplicate id {t.id!r} (also {by_id[t.id].name})",
            )
        else:
            by_id[t.id] = t
    for t in templates:
        ref = _TRANSLATION_RE.match(t.translation_of or "")
        if ref is not None and ref["id"] not in by_id:
            add(
                t.name,
                _key_line(t.path.read_text(encoding="utf-8"), "translation_of"),
                FRONT_MATTER,
                f"translation_of names unknown template {ref['id']!r}",
            )

    # A region condition naming no overlay would silently match nobody.
    if regions is None:
        regions = sorted(load_definition().regions)
    known_regions = {*regions, GLOBAL_REGION}
    for t in templates:
        listed = t.conditions.regions if t.conditions and t.conditions.regions else []
        unknown = [r for r in listed if r not in known_regions]
        if unknown:
            add(
                t.name,
                _key_line(t.path.read_text(encoding="utf-8"), "conditions"),
                FRONT_MATTER,
                f"conditions.regions {unknown} are not regions of the lead definition "
                f"(known: {sorted(known_regions)})",
            )

    # Render each statically clean template (and whose layouts/partials are clean) once.
    failed = {p.path for p in problems if p.severity == "error"}
    for t in templates:
        ast = asts.get(t.name)
        if t.name in failed or ast is None:
            continue
        referenced = {r for r in meta.find_referenced_templates(ast) if r is not None}
        if referenced & failed:
            continue
        try:
            content = render(t, sample_context(t), env)
        except Exception as exc:  # lint reports whatever a template raises
            add(
                t.name,
                _error_line(exc, str(t.path)),
                RENDER,
                f"{type(exc).__name__}: {exc}",
            )
            continue
        if t.channel == "email" and SAMPLE_UNSUBSCRIBE_URL not in content.body:
            add(
                t.name,
                None,
                UNSUBSCRIBE,
                "no unsubscribe link in the rendered email; extend "
                f'"_layout/email.{t.ext}.j2" or add {{{{ links.unsubscribe_url }}}}',
            )

    # Coverage: every (stage, locale) has an active template; other locales fall back to en.
    for locale in locales:
        for stage in stages:
            if stage == EVERGREEN_STAGE:
                continue
            if any(t.active and t.locale == locale and stage in t.stages for t in templates):
                continue
            where = f"{locale}/{stage}"
            if locale == "en":
                add(where, None, COVERAGE, f"no active en template for stage {stage}")
            else:
                add(
                    where,
                    None,
                    COVERAGE,
                    f"no active {locale} template for stage {stage}; falls back to en",
                    "warning",
                )

    for entry in stale_translations(list(by_id.values())):
        tid, _, detail = entry.partition(": ")
        t = by_id.get(tid)
        if t is None:
            continue
        line = _key_line(t.path.read_text(encoding="utf-8"), "translation_of")
        add(t.name, line, STALE_TRANSLATION, detail, "warning")

    return sorted(problems, key=lambda p: (p.path, p.line or 0, p.code, p.message))
