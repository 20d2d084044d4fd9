#!/usr/bin/env bash
# Install dsr for the systemd unit: a virtual environment in /opt/dsr, the command linked
# into /usr/local/bin, and dsr.service in /etc/systemd/system (kept if already there).
#
#   deploy/systemd/install.sh [SOURCE]
#
# SOURCE is what pip installs: this checkout (the default), a wheel or sdist from a
# release, or git+https://github.com/OWNER/dsr@v0.1.0. Run again to upgrade. Then edit the
# unit (spec path, flags, ReadWritePaths) and: systemctl enable --now dsr
# DSR_PREFIX, DSR_BIN_DIR and DSR_UNIT_DIR move the three places (tests use them).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source=${1:-$(cd "$here/../.." && pwd)}
prefix=${DSR_PREFIX:-/opt/dsr}
bin_dir=${DSR_BIN_DIR:-/usr/local/bin}
unit_dir=${DSR_UNIT_DIR:-/etc/systemd/system}
python=${PYTHON:-python3}

"$python" -m venv "$prefix"
"$prefix/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$source"
mkdir -p "$bin_dir"
ln -sfn "$prefix/bin/dsr" "$bin_dir/dsr"
mkdir -p "$unit_dir"
if [[ ! -e $unit_dir/dsr.service ]]; then
    sed "s|/opt/dsr/bin/dsr|$prefix/bin/dsr|" "$here/dsr.service" >"$unit_dir/dsr.service"
    echo "installed $unit_dir/dsr.service: edit its ExecStart and ReadWritePaths" >&2
fi
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    systemctl daemon-reload
fi
"$bin_dir/dsr" --version
