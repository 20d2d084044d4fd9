#!/usr/bin/env bash
# Make sure a Docker engine answers and a static busybox is on the host.
#
# Runs as root on a fresh Debian 12 machine; safe to run again and again (every step checks
# before it acts). What it ensures:
#   - dockerd is installed (Debian's docker.io);
#   - /bin/busybox is a statically linked binary (Debian's busybox-static): the engine tests
#     copy it into a scratch image, where no libc exists;
#   - `docker info` answers. With DOCKER_HOST set, the engine is someone else's: we only check.
#     Otherwise a dockerd is started in the background (it outlives this script) when the
#     local socket does not answer.
set -euo pipefail

DOCKERD_LOG=/var/log/dsr-dockerd.log
DOCKERD_PIDFILE=/var/run/docker.pid
WAIT_SECONDS=60

log() { printf 'setup-docker: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

apt_updated=0
apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        die "need root to install $* (apt-get)"
    fi
    if [[ $apt_updated -eq 0 ]]; then
        log "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ldd prints "not a dynamic executable" (or "statically linked") for a static binary.
is_static() {
    local out
    out=$(LC_ALL=C ldd "$1" 2>&1 || true)
    [[ $out == *"not a dynamic executable"* || $out == *"statically linked"* ]]
}

docker_answers() {
    timeout 10 docker info >/dev/null 2>&1
}

# --- packages -------------------------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
fi
if ! command -v docker >/dev/null 2>&1; then
    die "the docker CLI is missing although dockerd is installed"
fi
if [[ ! -x /bin/busybox ]] || ! is_static /bin/busybox; then
    # Replaces Debian's dynamically linked `busybox` package if that one is installed.
    apt_install busybox-static
    is_static /bin/busybox || die "/bin/busybox is still not statically linked"
fi
# The backup store tests restore without dsr (age -d | zstd -d | tar -x), as a user would.
for tool in age zstd; do
    command -v "$tool" >/dev/null 2>&1 || apt_install "$tool"
done

# What the deployment tests use: a browser for the status page, mmdebstrap for the
# container image's base, systemd-analyze for the unit, sshd for a git remote over ssh.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v sshd >/dev/null 2>&1 || [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
# dsr import compose is tested against a project Debian's docker-compose (1.x) made.
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi

# --- engine ---------------------------------------------------------------------------------
if docker_answers; then
    log "docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}"
    exit 0
fi
if [[ -n ${DOCKER_HOST:-} ]]; then
    die "DOCKER_HOST=$DOCKER_HOST is set but 'docker info' does not answer there" \
        "(not starting a local dockerd for a remote host)"
fi
if [[ $(id -u) -ne 0 ]]; then
    die "'docker info' does not answer on /var/run/docker.sock and only root can start dockerd"
fi

dockerd_pid=
if [[ -f $DOCKERD_PIDFILE ]]; then
    old_pid=$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)
    if [[ -n $old_pid ]] && kill -0 "$old_pid" 2>/dev/null; then
        log "dockerd is already running (pid $old_pid) but does not answer yet; waiting"
        dockerd_pid=$old_pid
    else
        # Left by a dockerd that died; a new one refuses to start while it is there.
        log "removing stale $DOCKERD_PIDFILE"
        rm -f "$DOCKERD_PIDFILE"
    fi
fi
if [[ -z $dockerd_pid ]]; then
    log "starting dockerd (log: $DOCKERD_LOG)"
    # setsid + nohup: the daemon gets its own session, so it survives this script and the
    # shell that ran it.
    setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
fi

deadline=$((SECONDS + WAIT_SECONDS))
while ((SECONDS < deadline)); do
    if docker_answers; then
        log "docker engine answers (dockerd pid $dockerd_pid)"
        exit 0
    fi
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then
        log "error: dockerd exited early; last lines of $DOCKERD_LOG:"
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    sleep 1
done

log "error: dockerd did not answer within ${WAIT_SECONDS}s; last lines of $DOCKERD_LOG:"
tail -n 30 "$DOCKERD_LOG" >&2 || true
exit 1
