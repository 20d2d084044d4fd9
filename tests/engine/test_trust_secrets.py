"""Issue 17, class 4 on the real engine: values from ``${VAR}`` that the engine itself
quotes back in its errors (an image it cannot pull, a working directory it rejects, a bind
source) and a hook's own output never leave dsr: every stream of every command, every
format, and every file dsr writes in its state directory are searched for the secret."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]

SECRET = "zq9secret4711xy"  # valid in an image name, a path and a hostname
ENV = {
    "S_IMG": f"127.0.0.1:1/{SECRET}/app:1",
    "S_WD": f"relative/{SECRET}",
    "S_TOK": f"tok-{SECRET}",
    "S_SHORT": "pw42",  # 4 characters: hidden where a whole token
}


PAD = " " * 16  # the indentation of a container's keys in the spec below


def _check(done: subprocess.CompletedProcess[str], *why: str) -> None:
    text = done.stdout + done.stderr
    assert SECRET not in text and "pw42" not in text, text
    assert "Traceback" not in text, text
    for part in why:
        assert part in text, text


def _state_files(state: Path) -> str:
    return "".join(
        p.read_bytes().decode("utf-8", "replace") for p in state.rglob("*") if p.is_file()
    )


def test_engine_errors_and_hook_output_never_print_a_secret(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    dsr_state_dir: Path,
) -> None:
    missing = tmp_path / SECRET / "nothing-here"
    env = {**ENV, "S_BIND": str(missing)}
    cases = [
        # (container lines, what the error must still say)
        ('image: "${S_IMG}"', ["${S_IMG}"]),
        (f'image: {busybox_image}\n{PAD}working_dir: "${{S_WD}}"', ["${S_WD}"]),
        (f'image: {busybox_image}\n{PAD}mounts: ["${{S_BIND}}:/x"]', ["${S_BIND}"]),
    ]
    for lines, why in cases:
        spec = tmp_spec(
            f"""
            version: 1
            containers:
              {prefix}-app:
                {lines}
                command: [sleep, "3600"]
            """
        )
        for args in (
            ["plan", spec.parent],
            ["plan", spec.parent, "--format", "json"],
            ["plan", spec.parent, "--format", "markdown"],
            ["apply", spec.parent],
            ["status", spec.parent, "--format", "json"],
        ):
            _check(dsr(*args, env=env))
        _check(dsr("--log-format", "json", "apply", spec.parent, env=env), *why)
        _check(dsr("--log-format", "console", "apply", spec.parent, env=env), *why)
    # a hook prints the container's secret env value (long and short) and fails
    volume = f"{prefix}-data"
    spec = tmp_spec(
        f"""
        version: 1
        volumes:
          {volume}: {{}}
        containers:
          {prefix}-db:
            image: {busybox_image}
            command: [sleep, "3600"]
            env: {{TOKEN: "${{S_TOK}}", PIN: "${{S_SHORT}}"}}
            mounts: ["{volume}:/data"]
        backups:
          nightly:
            volumes: [{volume}]
            destination: {tmp_path}/dest
            keep: {{last: 1}}
            hooks:
              before:
                - container: {prefix}-db
                  command: [sh, -c, 'echo "token $TOKEN pin $PIN" >&2; echo out-$TOKEN; exit 3']
        """
    )
    _check(dsr("apply", spec.parent, env=env, check=True))
    failed = dsr("--log-format", "json", "backup", spec.parent, env=env)
    assert failed.returncode == 1
    _check(failed, "exited 3", "token ")  # the hook's output is shown, redacted
    _check(dsr("backups", "list", spec.parent, "--format", "json", env=env))
    assert SECRET not in _state_files(dsr_state_dir)
