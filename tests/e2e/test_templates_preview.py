"""The template preview gallery in a real headless Chromium (the OS package, driven by Playwright).

Skips only when Chromium is missing and LEADSYNC_REQUIRE_BROWSER is unset; `make unit` installs
Chromium (scripts/install_browser.sh) and sets the variable, so CI fails instead of skipping.
"""

import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from orchestration.defs.resources import PROJECT_ROOT
from orchestration.funnel.definition import load_definition
from orchestration.funnel.nurture.preview import Gallery, build_gallery, synthetic_samples
from orchestration.funnel.nurture.templates import load_templates

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TEMPLATES = PROJECT_ROOT / "nurture_templates"
# Markup typed into a web form: if any of it ran, window.__pwned would be set.
HOSTILE_NAME = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _require_browser() -> None:
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is not installed (run scripts/install_browser.sh)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None:
        return
    if os.environ.get("LEADSYNC_REQUIRE_BROWSER"):
        pytest.fail(f"LEADSYNC_REQUIRE_BROWSER is set but {missing}")
    pytest.skip(missing)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Gallery:
    definition = load_definition()
    samples = synthetic_samples(definition)
    # One more English MQL lead whose name and company are markup.
    hostile = replace(
        next(s for s in samples if s.stage == "MQL" and s.locale == "en"),
        sample_id="mql-hostile",
        first_name=HOSTILE_NAME,
        company="<b>Bold & Co</b>",
    )
    out = tmp_path_factory.mktemp("preview")
    return build_gallery(
        load_templates(TEMPLATES), TEMPLATES, out, definition, samples=[*samples, hostile]
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


def test_gallery_in_chromium(gallery: Gallery, browser: object, tmp_path: Path) -> None:
    from playwright.sync_api import Browser, Dialog

    assert isinstance(browser, Browser)
    assert not gallery.errors, [r.error for r in gallery.errors]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[Dialog] = []

    def on_dialog(dialog: Dialog) -> None:  # an alert() from injected markup would land here
        dialogs.append(dialog)
        dialog.dismiss()

    page.on("dialog", on_dialog)

    # The index lists every template of the tree, each with at least one render.
    page.goto(gallery.index.as_uri())
    shown = set(
        page.locator("[data-template-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.templateId)"
        )
    )
    assert shown == {t.id for t in load_templates(TEMPLATES)}
    assert "0 error(s)" in page.locator("#summary").inner_text()
    page.screenshot(path=str(tmp_path / "index.png"))

    # A Japanese template for the jp sample reads as Japanese, with the honorific greeting.
    ja = next(r for r in gallery.renders if r.template.id == "mql-case-study-ja")
    assert ja.sample.region == "jp"
    page.goto((gallery.index.parent / ja.path).as_uri())
    text = page.locator("body").inner_text()
    assert len(_JAPANESE.findall(text)) > 50
    assert "山田 様" in text
    page.screenshot(path=str(tmp_path / "ja.png"), full_page=True)

    # The hostile name is shown as text, and none of it ran.
    hostile = [r for r in gallery.renders if r.sample.sample_id == "mql-hostile"]
    assert hostile and all(r.template.locale == "en" for r in hostile)
    html_render = next(r for r in hostile if r.template.ext == "html")
    page.goto((gallery.index.parent / html_render.path).as_uri())
    page.wait_for_load_state("load")
    assert "<script>window.__pwned = 1</script>" in page.locator("body").inner_text()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("script").count() == 0
    assert page.locator("img").count() == 0
    page.screenshot(path=str(tmp_path / "hostile.png"), full_page=True)
    assert not dialogs
    for name in ("index.png", "ja.png", "hostile.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    page.close()
