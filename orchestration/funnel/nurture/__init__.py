"""Nurture: templates marketers edit, next-content selection, and sandboxed rendering.

Submodules: `templates` (loading, front matter), `select` (next content per lead), `render` (the
one sandboxed Jinja environment). The package re-exports their main names, but not the `render`
function itself, so `from orchestration.funnel.nurture import render` is the submodule.
"""

from orchestration.funnel.nurture.render import (
    LeadContext,
    Links,
    NurtureContext,
    RenderedContent,
    default_links,
    links_for,
    make_environment,
    render_assignments,
)
from orchestration.funnel.nurture.select import assignment_changes, select_next
from orchestration.funnel.nurture.templates import Template, TemplateError, load_templates

__all__ = [
    "LeadContext",
    "Links",
    "NurtureContext",
    "RenderedContent",
    "Template",
    "TemplateError",
    "assignment_changes",
    "default_links",
    "links_for",
    "load_templates",
    "make_environment",
    "render_assignments",
    "select_next",
]
