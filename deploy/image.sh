#!/usr/bin/env bash
# Build dsr's container image with no registry: the base from Debian packages, dsr from
# wheels built on this machine.
#
#   deploy/image.sh [TAG]          (default TAG: dsr:local)
#
# 1. The base image (DSR_BASE_TAG, default dsr-base:bookworm) is made once with
#    `mmdebstrap --variant=minbase` (python3, python3-venv, git, openssh-client,
#    ca-certificates) and `docker import`; an existing tag is reused (about 25 s otherwise).
# 2. `pip wheel` builds dsr and its dependencies into wheels here (the host's python must
#    be the image's: 3.11 on Debian 12), with the git commit baked in for `dsr --version`.
# 3. `docker build -f deploy/Dockerfile` installs them into /opt/dsr in the image with
#    `pip install --no-index --find-links`: the image build needs no network.
# Needs root (mmdebstrap into a tarball, the Docker socket). Prints the image's tag.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tag=${1:-dsr:local}
base=${DSR_BASE_TAG:-dsr-base:bookworm}
suite=${DSR_BASE_SUITE:-bookworm}
python=${PYTHON:-python3}

log() { printf 'image.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- 1. the base ------------------------------------------------------------------------------
if docker image inspect "$base" >/dev/null 2>&1; then
    log "base $base exists"
else
    command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (apt-get install mmdebstrap)"
    log "making $base with mmdebstrap ($suite, minbase)"
    mmdebstrap --quiet --variant=minbase \
        --include=python3,python3-venv,git,openssh-client,ca-certificates \
        --aptopt='Acquire::Retries "3"' \
        --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
        "$suite" "$work/base.tar" >&2
    # Import under a temporary name, then tag: a run killed half-way leaves no base that
    # a later run would take for complete.
    id=$(docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        -c 'CMD ["/bin/bash"]' "$work/base.tar")
    docker tag "$id" "$base"
    rm -f "$work/base.tar"
fi

# --- 2. wheels --------------------------------------------------------------------------------
want=$(docker run --rm --network none "$base" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ $want == "$have" ]] || die "the image has python $want but $python is $have: wheels would not fit"
log "building wheels with $python"
mkdir -p "$work/context/wheels"
"$python" -m pip wheel --quiet --wheel-dir "$work/context/wheels" "$repo" >&2
cp "$repo/deploy/Dockerfile" "$work/context/Dockerfile"

# --- 3. the image -----------------------------------------------------------------------------
log "building $tag on $base"
docker build --quiet --build-arg "BASE=$base" -t "$tag" "$work/context" >/dev/null
echo "$tag"
