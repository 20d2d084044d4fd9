"""Issue 17, class 4: one redaction at the edge. Each case loads specs whose values come
from ``${VAR}`` (and containers' env values) and makes dsr print, log or export text that
holds them: whatever the path (OLD or NEW of a diff, an error, a log line, a metrics label,
a value after path normalisation), no secret leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli import main

SECRET = "s3cr3t-Value-9f8e7d"
ENV = {
    "P": f"/srv//{SECRET}/",
    "IMG": f"registry.example/{SECRET.lower()}:1",
    "DEST": f"/srv/backups/{SECRET}",
    "WORK": f"/work/{SECRET}",
    "TOKEN": SECRET,
}


def _spec(root: Path, name: str, text: str) -> Path:
    folder = root / name / "t17"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text("version: 1\nproject: t17\n" + text)
    return folder


OLD = """\
volumes:
  data: {reclaim: backup-then-delete}
backups:
  b: {volumes: [data], destination: "${DEST}"}
containers:
  web:
    image: "${IMG}"
    working_dir: "${WORK}"
    env: {PASSWORD: "literal-password-123", TOKEN: "${TOKEN}"}
    mounts: ["${P}x:/x"]
"""
NEW = """\
containers:
  other: {image: busybox}
"""


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main(args)
    out, err = capsys.readouterr()
    return out + err


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DSR_STATE_DIR", str(tmp_path / "state"))
    return _spec(tmp_path, "old", OLD), _spec(tmp_path, "new", NEW)


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_diff_never_prints_a_value_of_old(
    fmt: str, specs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = specs
    text = _run(["diff", str(old), str(new), "--format", fmt], capsys)
    assert "container:web" in text and "${" in text, text  # it did show OLD's values
    assert SECRET not in text and SECRET.lower() not in text, text
    assert "literal-password-123" not in text
    text = _run(["diff", str(new), str(old), "--format", fmt], capsys)  # and as NEW
    assert SECRET not in text and SECRET.lower() not in text, text


def test_a_normalised_path_is_redacted_too(
    specs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, _ = specs
    text = _run(["validate", str(old)], capsys)  # ${P}x does not exist: the error names it
    assert "does not exist" in text or "not checked" in text, text
    assert SECRET not in text, text


def test_errors_logs_and_metrics_pass_the_edge(
    specs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler import logs
    from reconciler.spec.redact import scrub

    old, _ = specs
    _run(["validate", str(old)], capsys)  # loads OLD: the edge knows its values now
    assert scrub(f"cannot pull image {ENV['IMG']}") == "cannot pull image ${IMG}"
    assert scrub(f"the working directory '{ENV['WORK']}' is invalid") == (
        "the working directory '${WORK}' is invalid"
    )
    assert SECRET not in scrub(json.dumps({"error": f"at {ENV['DEST']}/x"}))
    assert "literal-password-123" not in scrub("hook said literal-password-123")
    assert scrub("/srv/" + SECRET + "/x") == "${P}x" or SECRET not in scrub("/srv/" + SECRET)
    logs.configure("json")
    logs.get_logger("t17").info("hook", output=f"token={SECRET}")
    err = capsys.readouterr().err
    assert SECRET not in err and "token=${TOKEN}" in err, err


def test_metrics_labels_pass_the_edge(
    specs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler.daemon.metrics import Metrics

    old, _ = specs
    _run(["validate", str(old)], capsys)
    metrics = Metrics()
    metrics.project = "t17"
    metrics.backup_success.labels(f"path:{ENV['DEST']}").set(1)
    assert SECRET.encode() not in metrics.text()


@pytest.mark.parametrize(
    ("value", "text", "shown"),
    [
        # 8+ characters: anywhere, even inside a word
        ("hunter2hunter2", "xhunter2hunter2y", "x${V}y"),
        # 4 to 7: where a whole token
        ("pa55", "password pa55 was refused", "password ${V} was refused"),
        ("pa55", "image reg/pa55:1", "image reg/${V}:1"),
        ("pa55", "'pa55'", "'${V}'"),
        ("pa55", "spa55m", "spa55m"),  # inside a word: left
        ("other", "container:others", "container:others"),
        ("test", "busybox:latest", "busybox:latest"),
        # dsr's own words are never replaced (JSON consumers, log levels)
        ("create", '{"action": "create"}', '{"action": "create"}'),
        ("info", "level=info", "level=info"),
        # 1 to 3: a whole write or line only
        ("abc", "abc", "${V}"),
        ("abc", "  abc\n", "  ${V}\n"),
        ("abc", "abc is here", "abc is here"),
    ],
)
def test_the_edge_rule_by_length(value: str, text: str, shown: str) -> None:
    from reconciler.spec import redact
    from reconciler.spec.yamlload import Templated

    redact.forget()
    try:
        redact.remember(redact.Redaction.of([Templated("${V}", value, {value: "${V}"})]))
        assert redact.scrub(text) == shown
    finally:
        redact.forget()


def test_short_env_values_are_hidden_as_tokens() -> None:
    from reconciler.spec import redact

    redact.forget()
    try:
        redact.remember(
            redact.Redaction(), {"web": {"PIN": "a4711", "MODE": "info", "PORT": "8080"}}
        )
        assert redact.scrub("pin a4711 refused at level info on 8080") == (
            "pin (env PIN of web) refused at level info on 8080"
        )
    finally:
        redact.forget()


def test_notify_payloads_pass_the_edge() -> None:
    import http.server
    import threading
    import time

    from reconciler.daemon.alerts import Notifier
    from reconciler.spec import redact

    got: list[bytes] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    redact.forget()
    try:
        redact.remember(redact.Redaction(), {"web": {"TOKEN": SECRET, "PIN": "pw4711"}})
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        notifier = Notifier((url,), lambda: "t17", "h", stop)
        notifier.start()
        notifier.send("failed", f'cannot pull image r/{SECRET}:1 with "pw4711"', {"why": SECRET})
        notifier.drain(5)
        deadline = time.monotonic() + 5  # drained: taken from the queue, maybe not yet sent
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        assert got and all(SECRET.encode() not in body and b"pw4711" not in body for body in got)
        assert b"(env TOKEN of web)" in got[0]
    finally:
        redact.forget()
        server.shutdown()
