#!/bin/sh
# Runs the browser test of `xent serve`: installs playwright-core from the
# lock file when it is missing or another version (npm ci; no browser
# download: Debian's chromium is used), then drives the page.
# usage: run.sh PATH/TO/xent [SCREENSHOT_DIR]
# playwright-core is pinned to 1.57.0: it needs node >= 18 (Debian bookworm's
# nodejs is 18; 1.65 needs 20) and drives chromium 156 (checked).
set -e
[ $# -ge 1 ] || { echo "usage: $0 PATH/TO/xent [SCREENSHOT_DIR]" >&2; exit 2; }
xent=$(realpath "$1"); shift
shots=""; [ $# -ge 1 ] && { mkdir -p "$1"; shots=$(realpath "$1"); }
cd "$(dirname "$0")"
want=$(node -p "require('./package-lock.json').packages['node_modules/playwright-core'].version")
have=$(node -p "require('./node_modules/playwright-core/package.json').version" 2>/dev/null || true)
[ "$want" = "$have" ] || npm ci --no-audit --no-fund
exec node explorer.test.mjs "$xent" ${shots:+"$shots"}
