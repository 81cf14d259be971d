#!/bin/sh
# Render a report page (results/<pipeline>/report.html) in headless Chromium
# and save a screenshot, as a person would see the page:
#
#   scripts/report_screenshot.sh results/demo/report.html docs/report.png [WIDTH HEIGHT]
#
# Needs Chromium (Debian: apt-get install chromium; or set CHROMIUM to the
# browser's path). The page loads nothing, so no network is needed.
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 PAGE.html OUT.png [WIDTH HEIGHT]" >&2
    exit 2
fi
page=$(realpath "$1")
out=$(realpath -m "$2")
width=${3:-1400}
height=${4:-1800}
browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$browser" ]; then
    echo "no Chromium found: apt-get install chromium, or set CHROMIUM" >&2
    exit 3
fi
# --no-sandbox: Chromium refuses to run as root otherwise (containers, CI).
# Its stderr (D-Bus and GPU notices of a headless machine) is dropped.
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size="$width,$height" --screenshot="$out" "file://$page" 2>/dev/null >/dev/null
test -s "$out"
echo "$out"
