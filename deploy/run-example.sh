#!/usr/bin/env bash
# dsr's main job on a fresh Debian machine, as root: install and start Docker, install dsr,
# and apply the quick-start spec (specs/examples/quickstart) to the local engine.
# Safe to run again: the second run finds nothing to change.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/setup-docker.sh
if [ ! -x .venv/bin/dsr ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e .
fi
dsr=.venv/bin/dsr
spec=specs/examples/quickstart

# The example's containers run busybox's httpd; the image is made locally.
bash deploy/busybox-image.sh dsr-example/busybox:1

echo "== dsr validate $spec"
$dsr validate "$spec"
echo "== dsr plan $spec"
$dsr plan "$spec"
echo "== dsr apply $spec"
$dsr --log-format json apply "$spec" 2>/dev/null
echo "== dsr plan $spec --detailed-exitcode (0: the engine matches the spec)"
$dsr plan "$spec" --detailed-exitcode

echo "== what the web containers serve"
for web in qs-web1 qs-web2 qs-packed1; do
    printf '%s: ' "$web"
    docker exec "$web" wget -qO- http://127.0.0.1:8080/index.html | head -1
done
