#!/usr/bin/env bash
# Renders a Snakemake report (snakemake --report report.html) in headless Chromium and checks that it
# shows something: the landing page and, driven through the report app's own view switch, the
# quicklook of the classified map and the confusion-matrix plot. Screenshots land in OUT_DIR.
#
#   scripts/check_report.sh report.html [OUT_DIR]      (needs chromium: scripts/install_chromium.sh)
#
# Prints "report OK" and exits 0 when every screenshot is non-blank, the quicklook screenshot shows
# the water class colour and the rendered page lists the report's categories.
set -euo pipefail
REPORT=$(realpath "$1")
OUT=$(realpath -m "${2:-report_check}")
mkdir -p "$OUT"
CHROMIUM=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROMIUM" ]; then
    echo "check_report: chromium not found; run scripts/install_chromium.sh" >&2
    exit 2
fi
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT

browse() {  # browse URL ACTION... : one headless Chromium run with the flags a sandbox-less container needs
    local url=$1
    shift
    timeout 180 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
        --user-data-dir="$PROFILE" --window-size=1400,1000 --virtual-time-budget=20000 "$@" "$url" 2>/dev/null
}

# A copy of the report that, once loaded, opens the result whose path ends with $1 (an image).
show_result() {
    local target=$1 copy=$2
    python3 - "$REPORT" "$copy" "$target" <<'EOF'
import sys
report, copy, target = sys.argv[1:]
html = open(report, encoding="utf-8").read()
script = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const key = Object.keys(results).find(k => k.endsWith(%r));
  if (key) { app.setView({content: "img", contentPath: results[key].data_uri, resultPath: key}); }
  else { document.body.innerHTML = "<h1>result not found</h1>"; }
}, 300));
</script>""" % target
head, sep, tail = html.rpartition("</body>")
open(copy, "w", encoding="utf-8").write(head + script + sep + tail)
EOF
}

browse "file://$REPORT" --dump-dom > "$OUT/report_dom.html"
browse "file://$REPORT" --screenshot="$OUT/report_landing.png"
for target in classified_sieved_quicklook.png reference_confusion.png; do
    show_result "$target" "$OUT/view_${target%.png}.html"
    browse "file://$OUT/view_${target%.png}.html" --screenshot="$OUT/report_${target%.png}.png"
done

python3 - "$OUT" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from matplotlib.image import imread

out = Path(sys.argv[1])
problems = []
dom = (out / "report_dom.html").read_text(errors="replace")
for word in ("Accuracy", "Products", "Configuration"):
    if word not in dom:
        problems.append(f"rendered page does not list the category {word!r}")
for name in ("report_landing.png", "report_classified_sieved_quicklook.png", "report_reference_confusion.png"):
    path = out / name
    if not path.exists():
        problems.append(f"{name}: no screenshot")
        continue
    rgb = np.round(imread(path)[..., :3] * 255).astype(int)
    colours = len(np.unique(rgb.reshape(-1, 3), axis=0))
    non_white = float((rgb < 245).any(axis=-1).mean())
    print(f"{name}: {rgb.shape[1]} x {rgb.shape[0]} px, {colours} colours, {100 * non_white:.1f} % not white")
    if colours < 20 or non_white < 0.02:
        problems.append(f"{name} looks blank")
    if "quicklook" in name and not (np.abs(rgb - [0, 204, 242]).max(axis=-1) <= 6).sum() > 500:
        problems.append(f"{name} does not show the water colour of the quicklook")
if problems:
    print("report NOT OK:\n  " + "\n  ".join(problems))
    sys.exit(1)
print("report OK")
EOF
