#!/usr/bin/env bash
# Installs Chromium and a Japanese font from the OS packages for the template preview browser test
# (tests/e2e/test_templates_preview.py); without a CJK font Japanese renders as empty boxes in
# screenshots. Idempotent: exits at once when both are already there.
# Playwright drives this binary; `playwright install` is never used (it downloads browsers).
set -euo pipefail

has_ja_font() {
    command -v fc-list > /dev/null && [ -n "$(fc-list :lang=ja family 2> /dev/null)" ]
}
if [ -x /usr/bin/chromium ] && has_ja_font; then
    exit 0
fi
if ! command -v apt-get > /dev/null; then
    echo "install_browser.sh: no /usr/bin/chromium and no apt-get; install Chromium yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-ipafont-gothic
