"""Issue 8, classes 4 and 7: values that would inject lines or escapes, and values that
were changed or accepted silently. Same harness as the policy table (in-process
``dsr validate``, exact lines, under 2 s, no traceback, nothing changed on the host)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_trust_policy import Case, engine_socket, run_validate

from reconciler.plan.model import Action, Change, Op, Operation, Order, Plan, ReasonCode
from reconciler.render import render_markdown, render_text

__all__ = ["engine_socket"]  # the fixture, used by name

F = "specs/spec.yaml"
HEAD = "version: 1\nproject: t8x\n"


def case(case_id: str, body: str, expected: list[str], **options: Any) -> Any:
    return pytest.param(Case(HEAD + body, expected, **options), id=case_id)


def container(lines: str) -> str:
    return "containers:\n  web:\n    image: httpd:2.4\n" + lines


def image(lines: str) -> str:
    return "images:\n  site:\n    context: .\n" + lines


def schedule(text: str) -> str:
    return f"backups:\n  b:\n    paths: [/srv]\n    schedule: {text}\n"


CRON = "five fields (minute hour day month weekday) or one of @yearly, @annually, @monthly, "
CRON += "@weekly, @daily, @midnight, @hourly"

CLASS_4 = [  # injection into generated files and output
    case(
        "image-path-with-a-newline",
        image('    path: "/srv\\nRUN rm -rf /"\n'),
        [f"{F}:6: images.site.path: '/srv\\nRUN rm -rf /' contains a control character"],
    ),
    case(
        "image-base-with-a-newline",
        image('    path: /srv\n    base: "scratch\\nRUN id"\n'),
        [f"{F}:7: images.site.base: 'scratch\\nRUN id' is not an image reference (or scratch)"],
    ),
    case(
        "image-base-with-a-stage-name",
        image("    path: /srv\n    base: busybox AS evil\n"),
        [f"{F}:7: images.site.base: 'busybox AS evil' is not an image reference (or scratch)"],
    ),
    case(
        "image-path-with-a-variable",
        image("    path: /srv/${HOME}x\n".replace("${HOME}", "$$HOME")),
        [
            f"{F}:6: images.site.path: '/srv/$HOMEx': a data-packed image's path cannot hold "
            "'$' or '\\'"
        ],
    ),
    case(
        "image-path-with-a-backslash",
        image('    path: "/srv\\\\"\n'),
        [f"{F}:6: images.site.path: '/srv\\': a data-packed image's path cannot hold '$' or '\\'"],
    ),
    case(
        "target-that-clears-the-terminal",
        container('    mounts: [{type: tmpfs, target: "/x\\e[2J\\e[H"}]\n'),
        [
            f"{F}:6: containers.web.mounts[0].target: '/x\\x1b[2J\\x1b[H' contains a control character"
        ],
    ),
    case(
        "bind-source-with-a-bidi-override",
        container('    mounts: ["/srv/\\u202eatad:/data"]\n'),
        [
            f"{F}:6: containers.web.mounts[0].source: '/srv/\\u202eatad' contains a control character"
        ],
    ),
    case(
        "label-key-with-an-escape",
        container('    labels: {"a\\e]0;pwned\\a": x}\n'),
        [
            f"{F}:6: containers.web.labels: label key 'a\\x1b]0;pwned\\x07' is empty or contains "
            "a control character"
        ],
    ),
    case(
        "name-with-a-line-separator",
        'volumes:\n  "data\\u2028fake: ok": {}\n',
        [
            f"{F}:4: volumes[\"data\\u2028fake: ok\"]: 'data\\u2028fake: ok' is not a valid "
            "Docker name (must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$)"
        ],
    ),
]

CLASS_7 = [  # values changed or accepted silently
    case(
        "cron-six-fields",
        schedule('"* * * * * *"'),
        [f"{F}:6: backups.b.schedule: '* * * * * *' is not a cron schedule: {CRON}"],
    ),
    case(
        "cron-seven-fields",
        schedule('"0 0 3 * * * 2027"'),
        [f"{F}:6: backups.b.schedule: '0 0 3 * * * 2027' is not a cron schedule: {CRON}"],
    ),
    case(
        "cron-reboot",
        schedule("'@reboot'"),
        [f"{F}:6: backups.b.schedule: '@reboot' is not a cron schedule: {CRON}"],
    ),
    case(
        "cron-trailing-newline",
        schedule('"0 3 * * *\\n"'),
        [f"{F}:6: backups.b.schedule: '0 3 * * *\\n' is not a cron schedule: {CRON}"],
    ),
    case(
        "cron-never-feb-31",
        schedule('"0 3 31 2 *"'),
        [f"{F}:6: backups.b.schedule: '0 3 31 2 *' never fires (no date matches it)"],
    ),
    case(
        "cron-never-apr-31",
        schedule('"15 4 31 4 *"'),
        [f"{F}:6: backups.b.schedule: '15 4 31 4 *' never fires (no date matches it)"],
    ),
    case(
        "restart-trailing-newline",
        container('    restart: "always\\n"\n'),
        [
            f"{F}:6: containers.web.restart: 'always\\n': expected no, always, unless-stopped or on-failure[:N]"
        ],
    ),
    case(
        "port-trailing-newline",
        container('    ports: ["80\\n"]\n'),
        [f"{F}:6: containers.web.ports: '80\\n' is not [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"],
    ),
    case(
        "project-trailing-newline",
        "",
        [
            f"{F}:2: project: 'web\\n' is not a valid project name (lower-case letters, digits, '_' and '-')"
        ],
    ),
    case(
        "duration-trailing-newline",
        'backups:\n  b: {paths: [/srv], keep: {within: "2d\\n"}}\n',
        [
            f"{F}:4: backups.b.keep.within: '2d\\n' is not a duration like 1y2m3d4h (years, months, days, hours)"
        ],
    ),
    case(
        "empty-image",
        container("").replace("httpd:2.4", '""'),
        [f"{F}:5: containers.web.image: '' is not an image: give a key of images or a reference"],
    ),
    case(
        "empty-image-of-a-volume-container",
        "volume_containers:\n  vc:\n    image: ''\n",
        [
            f"{F}:5: volume_containers.vc.image: '' is not an image: give a key of images or a reference"
        ],
    ),
    case(
        "image-tag-of-129",
        container("").replace("httpd:2.4", "httpd:" + "a" * 129),
        [
            f"{F}:5: containers.web.image: 'httpd:{'a' * 129}' is neither a key of images nor a valid image reference"
        ],
    ),
    case(
        "image-tag-fullwidth-digit",
        container("").replace("httpd:2.4", "httpd:２.4"),
        [
            f"{F}:5: containers.web.image: 'httpd:２.4' is neither a key of images nor a valid image reference"
        ],
    ),
    case(
        "image-upper-case-repository",
        container("").replace("httpd:2.4", "library/Httpd"),
        [
            f"{F}:5: containers.web.image: 'library/Httpd' is neither a key of images nor a valid image reference"
        ],
    ),
    case(
        "target-double-slash-duplicate",
        container(
            "    mounts:\n      - {type: tmpfs, target: /data}\n      - {type: tmpfs, target: //data/}\n"
        ),
        [f"{F}:6: containers.web.mounts: two mounts have the target /data"],
    ),
    case(
        "image-key-making-an-invalid-tag",
        "images:\n  a..b: {context: ., path: /x}\n",
        [
            f"{F}:4: images[\"a..b\"]: 'a..b' is not a valid image key (lower case; must match ^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$)"
        ],
    ),
    case(
        "invalid-ip",
        container('    ports: ["999.1.1.1:80:80"]\n'),
        [f"{F}:6: containers.web.ports: '999.1.1.1:80:80': '999.1.1.1' is not an IP address"],
    ),
    case(
        "invalid-ipv6",
        container('    ports: ["[::g]:80:80"]\n'),
        [f"{F}:6: containers.web.ports: '[::g]:80:80': '::g' is not an IP address"],
    ),
    case(
        "reversed-range",
        container('    ports: ["8080-8000:80"]\n'),
        [f"{F}:6: containers.web.ports: '8080-8000:80': the range 8080-8000 runs backwards"],
    ),
    case(
        "mismatched-ranges",
        container('    ports: ["8000-8001:80-82"]\n'),
        [
            f"{F}:6: containers.web.ports: '8000-8001:80-82': the host and container ranges differ in length"
        ],
    ),
    case(
        "container-port-zero",
        container('    ports: ["8080:0"]\n'),
        [f"{F}:6: containers.web.ports: '8080:0': the container port cannot be 0"],
    ),
    case(
        "env-key-with-equals",
        container('    env: {"A=B": x}\n'),
        [f"{F}:6: containers.web.env: env key 'A=B' must be non-empty, without '=' or controls"],
    ),
    case(
        "env-key-empty",
        container('    env: ["=x"]\n'),
        [f"{F}:6: containers.web.env: env key '' must be non-empty, without '=' or controls"],
    ),
    case(
        "env-value-with-nul",
        container('    env: {A: "x\\0y"}\n'),
        [f"{F}:6: containers.web.env: env A: a value cannot hold a NUL character"],
    ),
]


SECRET = "s3cr3t-Value-42"
CLASS_5 = [  # errors that quoted an expanded ${VAR}
    case(
        "secret-as-image",
        container("").replace("httpd:2.4", '"${SECRET}"'),
        [
            f"{F}:5: containers.web.image: '${{SECRET}}' is neither a key of images nor a valid image reference"
        ],
    ),
    case(
        "secret-in-a-port",
        container('    ports: ["80:${SECRET}"]\n'),
        [
            f"{F}:6: containers.web.ports: '80:${{SECRET}}' is not [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"
        ],
    ),
    # A missing bind source is a host fact validate does not check (the contract): its note
    # quotes ${SECRET} as written, see test_secrets.test_what_validate_did_not_check_...
    case(
        "secret-as-a-volume-reference",
        container('    mounts: ["${SECRET}:/data"]\n'),
        [f"{F}:6: containers.web.mounts[0].source: volume '${{SECRET}}' is not defined"],
    ),
    case(
        "secret-as-restart",
        container('    restart: "${SECRET}"\n'),
        [
            f"{F}:6: containers.web.restart: '${{SECRET}}': expected no, always, unless-stopped or on-failure[:N]"
        ],
    ),
    case(
        "secret-in-a-refused-destination",
        "backups:\n  b:\n    paths: [/srv]\n    destination: /etc/${SECRET}\n",
        [
            f"{F}:6: backups.b.destination: /etc/${{SECRET}} is under the protected /etc; "
            "refused by the default host-path policy (an admin --policy file can allow it)"
        ],
    ),
    case(
        "secret-as-schedule",
        schedule('"${SECRET}"'),
        [f"{F}:6: backups.b.schedule: '${{SECRET}}' is not a cron schedule: {CRON}"],
    ),
    case(
        "secret-as-project",
        "",
        [f"{F}:2: project: must be written out, not taken from ${{VAR}}"],
    ),
]


@pytest.mark.parametrize("c", CLASS_5)
def test_errors_show_variables_as_written(
    c: Case,
    tmp_path: Path,
    engine_socket: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRET", SECRET)
    if c.expected[0].endswith("not taken from ${VAR}"):
        c = Case(c.spec.replace("project: t8x", "project: ${SECRET}"), c.expected)
    lines = run_validate(tmp_path, c, capsys)
    assert lines == c.expected
    assert all(SECRET not in line for line in lines)


def _project_newline(c: Any) -> Any:
    text = c.values[0].spec.replace("project: t8x", 'project: "web\\n"')
    return pytest.param(Case(text, c.values[0].expected), id=c.id)


CLASS_7 = [_project_newline(c) if c.id == "project-trailing-newline" else c for c in CLASS_7]


@pytest.mark.parametrize("c", CLASS_4 + CLASS_7)
def test_value_is_refused(
    c: Case, tmp_path: Path, engine_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_validate(tmp_path, c, capsys) == c.expected


HOSTILE = [
    "\x1b[2J\x1b[Hall clear",
    "<img src=x onerror=alert(1)>",
    "![pixel](https://evil.invalid/p.png)",
    "[click](https://evil.invalid)",
    "@org/admins please merge",
    "back`tick`` and ``` fences",
    "pipe | splits | cells",
    "line\nbreak\r\u2028sep\u202eevil",
]


def hostile_plan(text: str) -> Plan:
    change = Change(
        f"container:{text}",
        Action.REPLACE,
        f"labels was {text!r}, spec says {text}",
        ReasonCode.CONFIG_CHANGED,
        order=Order.DELETE_THEN_CREATE,
        downtime=text,
        operations=(Operation(Op.RENAME_CONTAINER, text, text), Operation(Op.STOP_CONTAINER, text)),
    )
    return Plan(project=text, changes=(change,), orphans=(f"volume:{text}",), errors=(text,))


@pytest.mark.parametrize("text", HOSTILE)
def test_text_plan_shows_control_characters_escaped(text: str) -> None:
    out = render_text(hostile_plan(text))
    assert not any(c in out for c in "\x1b\r\u2028\u202e")
    assert len(out.splitlines()) == len(render_text(hostile_plan("x")).splitlines())


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_plan_puts_untrusted_text_in_code_spans(text: str) -> None:
    out = render_markdown(hostile_plan(text))
    assert len(out.splitlines()) == len(render_markdown(hostile_plan("x")).splitlines())
    for line in out.splitlines():
        outside = _outside_code_spans(line)
        for bad in ("<img", "](", "@org", "\x1b", "\u202e"):
            assert bad not in outside, (bad, line)
    row = next(line for line in out.splitlines() if line.startswith("| `-/+`"))
    assert (
        len(_outside_code_spans(row).replace("\\|", "").split("|")) == 8
    )  # six columns, operations last


def _outside_code_spans(line: str) -> str:
    """``line`` with its CommonMark code spans cut out (a run of n backticks closes only at
    the next run of exactly n)."""
    out, i = [], 0
    while i < len(line):
        if line[i] == "`":
            j = i
            while j < len(line) and line[j] == "`":
                j += 1
            fence = line[i:j]
            k = j
            while True:
                k = line.find(fence, k)
                if k == -1:
                    out.append(line[i:])
                    return "".join(out)
                end = k + len(fence)
                if (end == len(line) or line[end] != "`") and (line[k - 1] != "`"):
                    break
                k = end
            i = k + len(fence)
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


@pytest.mark.parametrize(
    "char",
    [
        "\x1b", "\x9b", "\u061c", "\u200e", "\u202e", "\u2066", "\u2069", "\U000e0041",
        # round two: other invisible characters and lone surrogates
        "\xad", "\u115f", "\u1160", "\u17b4", "\u206a", "\u206f", "\u3164", "\uffa0",
        "\ud800",
    ],
)  # fmt: skip
def test_invisible_and_control_characters_are_shown_escaped(char: str) -> None:
    from reconciler.escape import escape_controls, has_control

    shown = escape_controls(f"name{char}x")
    assert char not in shown and shown.startswith("name\\") and has_control(char)
    shown.encode("utf-8")  # printable on any UTF-8 stream


def test_an_emoji_with_its_variation_selector_is_text() -> None:
    from reconciler.escape import escape_controls, has_control

    assert (
        not has_control("photos-\u2764\ufe0f") and escape_controls("\u2764\ufe0f") == "\u2764\ufe0f"
    )
