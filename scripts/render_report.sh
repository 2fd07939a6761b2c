#!/bin/sh
# Renders a `sweep report --html` page in headless Chromium and saves a screenshot, to check
# the page draws (docs/report-demo.png was made this way).
#
# usage: scripts/render_report.sh REPORT.html OUT.png
# needs: chromium (Debian: apt-get install chromium)
set -eu
html=$(realpath "$1")
out=$2
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=900,1100 \
  --screenshot="$out" "file://$html" 2>/dev/null
test -s "$out" && echo "wrote $out"
