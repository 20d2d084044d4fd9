"""What ``dsr validate`` says about invalid specs: one table, exact messages.

Each case writes its spec files under ``specs/`` in a fresh temporary directory (the test
runs chdir'd there, so file names read ``specs/spec.yaml``), plus whatever the case needs
on the host (folders, files, links, an admin policy under ``admin/``), loads the set with an
explicit ``env`` mapping, and compares the printed issues line by line. Absolute host paths
in messages are written ``$TMP/...``. Every case also checks that validating changed
nothing on the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from reconciler.cli import main
from reconciler.errors import PolicyError, SpecError
from reconciler.spec import load_policy, load_spec

SEED = Path(__file__).resolve().parents[2] / "specs" / "examples" / "seed"


@dataclass(frozen=True)
class Case:
    """One spec set and the exact lines ``dsr validate`` must print (none: valid)."""

    files: dict[str, str]
    expected: list[str]
    env: dict[str, str] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()  # host folders the spec needs, below the temp dir
    touch: tuple[str, ...] = ()  # host files the spec needs
    links: dict[str, str] = field(default_factory=dict)  # link -> target
    policy: str | None = None  # an admin policy, written to admin/policy.yaml
    project: str | None = None  # --project
    absent: tuple[str, ...] = ()  # paths that must still not exist afterwards


def case(case_id: str, text: str | dict[str, str], expected: list[str], **options: Any) -> Any:
    files = {"spec.yaml": text} if isinstance(text, str) else text
    return pytest.param(Case(files=files, expected=expected, **options), id=case_id)


def spec(text: str) -> str:
    """Dedented YAML; the first line of the literal is line 1 of the file."""
    return textwrap.dedent(text).lstrip("\n")


F = "specs/spec.yaml"
REFUSED = "refused by the default host-path policy (an admin --policy file can allow it)"
MISSING = (
    "does not exist (a bind source must exist; for a directory, 'create: true' lets dsr create it)"
)
# Most hosts link /var/run to /run: the message names the resolved socket then.
_SOCKET = os.path.realpath("/var/run/docker.sock")
SOCKET_VIA = "" if _SOCKET == "/var/run/docker.sock" else f" resolves to {_SOCKET}, which"
DOCKER_NAME = "must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$"

CASES = [
    # --- YAML itself ---------------------------------------------------------------------
    case(
        "yaml-syntax-unclosed-flow-mapping",
        spec("""
            version: 1
            volumes:
              data: {driver: local
            """),
        [
            f"{F}:4: YAML syntax error: did not find expected ',' or '}}' (column 1), "
            "while parsing a flow mapping at line 3, column 9"
        ],
    ),
    case(
        "yaml-syntax-unclosed-quote",
        spec("""
            version: 1
            containers:
              web1:
                image: "httpd:2.4
            """),
        [
            f"{F}:5: YAML syntax error: found unexpected end of stream (column 1), "
            "while scanning a quoted scalar at line 4, column 12"
        ],
    ),
    case(
        "yaml-control-character",
        "version: 1\nvolumes:\n  data: {driver: \x07}\n",
        [f"{F}:3: YAML error: control characters are not allowed (character #x0007)"],
    ),
    case(
        "yaml-undefined-alias",
        spec("""
            version: 1
            containers:
              web1: *web
            """),
        [f"{F}:3: YAML syntax error: found undefined alias (column 9)"],
    ),
    case(
        "yaml-list-as-key",
        spec("""
            version: 1
            volumes:
              ? [data, logs]
              : {}
            """),
        [f"{F}:3: volumes: a key must be plain text, not a list or a mapping"],
    ),
    case(
        "yaml-syntax-bad-indentation",
        spec("""
            version: 1
            key: value
              bad: x
            """),
        [f"{F}:3: YAML syntax error: mapping values are not allowed in this context (column 6)"],
    ),
    case(
        "yaml-syntax-tab-indentation",
        "version: 1\nvolumes:\n\tdata: {}\n",
        [f"{F}:3: YAML syntax error: found character that cannot start any token (column 1)"],
    ),
    case(
        "yaml-duplicate-key",
        spec("""
            version: 1
            volumes:
              data: {}
              data: {driver: local}
            """),
        [f"{F}:4: volumes.data: key 'data' is defined twice (first at line 3)"],
    ),
    case(
        "empty-file",
        "",
        [f"{F}:1: the file is empty; a spec file starts with 'version: 1'"],
    ),
    case(
        "only-comments",
        "# volumes come later\n",
        [f"{F}:1: the file is empty; a spec file starts with 'version: 1'"],
    ),
    case(
        "file-is-a-list",
        "- version: 1\n",
        [f"{F}:1: a spec file must be a mapping that starts with 'version: 1'"],
    ),
    case(
        "file-is-a-scalar-missing-colon",
        "version 1\n",
        [f"{F}:1: a spec file must be a mapping that starts with 'version: 1'"],
    ),
    # --- top level -----------------------------------------------------------------------
    case(
        "missing-version",
        spec("""
            volumes:
              data: {}
            """),
        [f"{F}:1: required key 'version' is missing"],
    ),
    case(
        "wrong-version",
        "version: 2\n",
        [f"{F}:1: version: must be 1, not a number (2)"],
    ),
    case(
        "unknown-top-level-key-suggested",
        spec("""
            version: 1
            volume:
              data: {}
            """),
        [f"{F}:2: unknown key 'volume'; did you mean 'volumes'?"],
    ),
    case(
        "invalid-project-name",
        "version: 1\nproject: My App\n",
        [
            f"{F}:2: project: 'My App' is not a valid project name "
            "(lower-case letters, digits, '_' and '-')"
        ],
    ),
    # --- unknown keys inside resources ------------------------------------------------
    case(
        "unknown-key-in-volume",
        spec("""
            version: 1
            volumes:
              data:
                drivr: local
            """),
        [f"{F}:4: volumes.data: unknown key 'drivr'; did you mean 'driver'?"],
    ),
    case(
        "unknown-key-without-close-match-lists-valid-keys",
        spec("""
            version: 1
            volumes:
              data:
                state: running
            """),
        [
            f"{F}:4: volumes.data: unknown key 'state'; valid keys: "
            "driver, driver_opts, labels, external, reclaim, on_change, adopt, hosts"
        ],
    ),
    case(
        "unknown-key-in-container",
        spec("""
            version: 1
            containers:
              web1:
                imgae: httpd:2.4
            """),
        [
            f"{F}:3: containers.web1: required key 'image' is missing",
            f"{F}:4: containers.web1: unknown key 'imgae'; did you mean 'image'?",
        ],
    ),
    case(
        "unknown-key-in-volume-container",
        spec("""
            version: 1
            volume_containers:
              vc_data:
                mount: [/var/cache/app]
            """),
        [f"{F}:4: volume_containers.vc_data: unknown key 'mount'; did you mean 'mounts'?"],
    ),
    case(
        "unknown-key-in-mount",
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:2.4
                mounts:
                  - type: tmpfs
                    target: /tmp/cache
                    read_onyl: true
            """),
        [f"{F}:8: containers.web1.mounts[0]: unknown key 'read_onyl'; did you mean 'read_only'?"],
    ),
    case(
        "unknown-key-in-keep",
        spec("""
            version: 1
            backups:
              nightly:
                paths: [/srv]
                keep: {lats: 3}
            """),
        [f"{F}:5: backups.nightly.keep: unknown key 'lats'; did you mean 'last'?"],
    ),
    # --- wrong types ------------------------------------------------------------------
    case(
        "string-for-list",
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:2.4
                mounts: /srv/htdocs:/usr/local/apache2/htdocs
            """),
        [
            f"{F}:5: containers.web1.mounts: expected a list, "
            "got '/srv/htdocs:/usr/local/apache2/htdocs'"
        ],
    ),
    case(
        "list-for-mapping",
        spec("""
            version: 1
            volumes: [data, logs]
            """),
        [f"{F}:2: volumes: expected a mapping, got a list"],
    ),
    case(
        "text-for-bool",
        spec("""
            version: 1
            volumes:
              data:
                external: maybe
            """),
        [f"{F}:4: volumes.data.external: expected true or false, got 'maybe'"],
    ),
    case(
        # YAML 1.2 as compose: a plain scalar in a text field is the text written, so
        # `image: 42` names the image 42; a mapping is no text at all.
        "mapping-for-image",
        spec("""
            version: 1
            containers:
              web1:
                image: {name: httpd}
            """),
        [f"{F}:4: containers.web1.image: expected text, got a mapping"],
    ),
    case(
        # `sleep 10` is text as written (YAML 1.2, as compose); a list inside is not.
        "list-in-command",
        spec("""
            version: 1
            containers:
              sleeper:
                image: busybox
                command: [sleep, [10]]
            """),
        [f"{F}:5: containers.sleeper.command[1]: expected text, got a list"],
    ),
    # --- enums ------------------------------------------------------------------------
    case(
        "invalid-state",
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:2.4
                state: stopped
            """),
        [f"{F}:5: containers.web1.state: must be 'running' or 'created', not 'stopped'"],
    ),
    case(
        "invalid-reclaim-and-on-change",
        spec("""
            version: 1
            volumes:
              data:
                reclaim: never
                on_change: drop
            """),
        [
            f"{F}:4: volumes.data.reclaim: must be 'retain', 'delete' or "
            "'backup-then-delete', not 'never'",
            f"{F}:5: volumes.data.on_change: must be 'block', 'migrate' or 'recreate', not 'drop'",
        ],
    ),
    # --- mounts -----------------------------------------------------------------------
    case(
        "relative-container-target-short",
        spec("""
            version: 1
            volume_containers:
              vc_data:
                mounts: [var/cache/app]
            """),
        [
            f"{F}:4: volume_containers.vc_data.mounts[0].target: "
            "'var/cache/app' is not an absolute path in the container"
        ],
    ),
    case(
        "relative-container-target-long",
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:2.4
                mounts:
                  - type: tmpfs
                    target: tmp/cache
            """),
        [
            f"{F}:7: containers.web1.mounts[0].target: "
            "'tmp/cache' is not an absolute path in the container"
        ],
    ),
    case(
        "mount-over-container-root",
        spec("""
            version: 1
            volume_containers:
              vc_data:
                mounts: [/]
            """),
        [
            f"{F}:4: volume_containers.vc_data.mounts[0].target: "
            "a mount cannot replace the container's root '/'"
        ],
    ),
    case(
        "short-mount-empty-source",
        spec("""
            version: 1
            volume_containers:
              vc_data:
                mounts: [":/x"]
            """),
        [
            f"{F}:4: volume_containers.vc_data.mounts[0]: "
            "':/x': empty section in a short mount (SOURCE:TARGET[:OPTIONS])"
        ],
    ),
    case(
        "short-mount-empty-middle",
        spec("""
            version: 1
            volume_containers:
              vc_data:
                mounts: ["a::b"]
            """),
        [
            f"{F}:4: volume_containers.vc_data.mounts[0]: "
            "'a::b': empty section in a short mount (SOURCE:TARGET[:OPTIONS])"
        ],
    ),
    case(
        "short-mount-too-many-colons",
        spec("""
            version: 1
            volumes:
              data: {}
            volume_containers:
              vc_data:
                mounts: ["data:/srv:ro:z"]
            """),
        [
            f"{F}:6: volume_containers.vc_data.mounts[0]: "
            "'data:/srv:ro:z': too many ':' in a short mount (SOURCE:TARGET[:OPTIONS])"
        ],
    ),
    case(
        "short-mount-unknown-option",
        spec("""
            version: 1
            volumes:
              data: {}
            volume_containers:
              vc_data:
                mounts: ["data:/srv:rx"]
            """),
        [
            f"{F}:6: volume_containers.vc_data.mounts[0]: 'data:/srv:rx': unknown mount "
            "option 'rx' (expected ro, rw, nocopy, z, Z, private, rprivate, shared, rshared, "
            "slave, rslave)"
        ],
    ),
    case(
        "short-mount-ro-and-rw",
        spec("""
            version: 1
            volumes:
              data: {}
            volume_containers:
              vc_data:
                mounts: ["data:/srv:ro,rw"]
            """),
        [
            f"{F}:6: volume_containers.vc_data.mounts[0]: "
            "'data:/srv:ro,rw': 'ro' and 'rw' cannot both be given"
        ],
    ),
    case(
        "short-mount-propagation-on-volume",
        spec("""
            version: 1
            volumes:
              data: {}
            volume_containers:
              vc_data:
                mounts: ["data:/srv:rshared"]
            """),
        [
            f"{F}:6: volume_containers.vc_data.mounts[0]: "
            "'data:/srv:rshared': propagation applies to bind mounts only"
        ],
    ),
    case(
        "long-mount-propagation-on-volume",
        spec("""
            version: 1
            volumes:
              data: {}
            containers:
              web1:
                image: httpd:2.4
                mounts:
                  - type: volume
                    source: data
                    target: /srv
                    propagation: rshared
            """),
        [f"{F}:8: containers.web1.mounts[0]: 'propagation' applies to bind mounts only"],
    ),
    case(
        "short-mount-nocopy-on-bind",
        spec("""
            version: 1
            volume_containers:
              vc_data:
                mounts: ["./htdocs:/srv:nocopy"]
            """),
        [
            f"{F}:4: volume_containers.vc_data.mounts[0]: "
            "'./htdocs:/srv:nocopy': nocopy applies to volumes only"
        ],
        dirs=("specs/htdocs",),
    ),
    case(
        "create-on-volume-mount",
        spec("""
            version: 1
            volumes:
              data: {}
            containers:
              web1:
                image: httpd:2.4
                mounts:
                  - type: volume
                    source: data
                    target: /srv
                    create: true
            """),
        [f"{F}:8: containers.web1.mounts[0]: 'create' applies to bind mounts only"],
    ),
    case(
        "tmpfs-with-source",
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:2.4
                mounts:
                  - type: tmpfs
                    source: cache
                    target: /tmp/cache
            """),
        [f"{F}:6: containers.web1.mounts[0]: a tmpfs mount has no source"],
    ),
    case(
        "bind-without-source",
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:2.4
                mounts:
                  - type: bind
                    target: /usr/local/apache2/htdocs
            """),
        [f"{F}:6: containers.web1.mounts[0]: a bind mount needs a source (a host path)"],
    ),
    case(
        "duplicate-mount-targets",
        spec("""
            version: 1
            volumes:
              data: {}
            containers:
              web1:
                image: httpd:2.4
                mounts:
                  - data:/srv
                  - type: tmpfs
                    target: /srv/
            """),
        [f"{F}:7: containers.web1.mounts: two mounts have the target /srv"],
    ),
    # --- references -------------------------------------------------------------------
    case(
        "dangling-volume-suggested",
        spec("""
            version: 1
            volumes:
              registry-data: {}
            containers:
              registry:
                image: registry:2
                mounts:
                  - registry-dta:/var/lib/registry
            """),
        [
            f"{F}:8: containers.registry.mounts[0].source: "
            "volume 'registry-dta' is not defined; did you mean 'registry-data'?"
        ],
    ),
    case(
        "dangling-volume-long-form-nothing-close",
        spec("""
            version: 1
            volume_containers:
              vc_tools:
                mounts:
                  - type: volume
                    source: tools
                    target: /opt/tools
            """),
        [f"{F}:6: volume_containers.vc_tools.mounts[0].source: volume 'tools' is not defined"],
    ),
    case(
        "dangling-volumes-from-suggested",
        spec("""
            version: 1
            volume_containers:
              vc_data: {}
            containers:
              web4:
                image: httpd:2.4
                volumes_from: [vc_dat]
            """),
        [
            f"{F}:7: containers.web4.volumes_from[0]: "
            "container 'vc_dat' is not defined; did you mean 'vc_data'?"
        ],
    ),
    case(
        "dangling-backup-volume",
        spec("""
            version: 1
            volumes:
              registry-data: {}
            backups:
              nightly:
                volumes: [registry-data, logs]
            """),
        [f"{F}:6: backups.nightly.volumes[1]: volume 'logs' is not defined"],
    ),
    case(
        "invalid-image-reference-upper-case",
        spec("""
            version: 1
            containers:
              web1:
                image: Httpd:2.4
            """),
        [
            f"{F}:4: containers.web1.image: "
            "'Httpd:2.4' is neither a key of images nor a valid image reference"
        ],
    ),
    case(
        "invalid-image-reference-empty-tag",
        spec("""
            version: 1
            volume_containers:
              vc_data:
                image: "busybox:"
            """),
        [
            f"{F}:4: volume_containers.vc_data.image: "
            "'busybox:' is neither a key of images nor a valid image reference"
        ],
    ),
    case(
        "volumes-from-self",
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:2.4
                volumes_from: [web1]
            """),
        [f"{F}:5: containers.web1.volumes_from: volumes_from forms a cycle: web1 -> web1"],
    ),
    case(
        "volumes-from-cycle-of-two",
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:2.4
                volumes_from: [web2]
              web2:
                image: httpd:2.4
                volumes_from: ["web1:ro"]
            """),
        [f"{F}:5: containers.web1.volumes_from: volumes_from forms a cycle: web1 -> web2 -> web1"],
    ),
    case(
        "volumes-from-cycle-of-three-across-files",
        {
            "a.yaml": spec("""
                version: 1
                containers:
                  web1:
                    image: httpd:2.4
                    volumes_from: [web2]
                  web2:
                    image: httpd:2.4
                    volumes_from: [web3]
                """),
            "b.yaml": spec("""
                version: 1
                containers:
                  web3:
                    image: httpd:2.4
                    volumes_from: [web1]
                """),
        },
        [
            "specs/a.yaml:5: containers.web1.volumes_from: "
            "volumes_from forms a cycle: web1 -> web2 -> web3 -> web1"
        ],
    ),
    case(
        "duplicate-volumes-from-entry",
        spec("""
            version: 1
            volume_containers:
              vc_data: {}
            containers:
              web4:
                image: httpd:2.4
                volumes_from: [vc_data, "vc_data:ro"]
            """),
        [f"{F}:7: containers.web4.volumes_from: 'vc_data' is listed twice"],
    ),
    # --- names ------------------------------------------------------------------------
    case(
        "same-name-container-and-volume-container",
        spec("""
            version: 1
            volume_containers:
              web1:
                mounts: [/var/cache/app]
            containers:
              web1:
                image: httpd:2.4
            """),
        [
            f"{F}:3: volume_containers.web1: 'web1' is defined twice: also at {F}:6",
            f"{F}:6: containers.web1: 'web1' is defined twice: also at {F}:3",
        ],
    ),
    case(
        "same-name-across-files",
        {
            "a.yaml": spec("""
                version: 1
                volumes:
                  data: {}
                """),
            "sub/b.yml": spec("""
                version: 1

                volumes:
                  logs: {}
                  data: {driver: local}
                """),
        },
        [
            "specs/a.yaml:3: volumes.data: 'data' is defined twice: also at specs/sub/b.yml:5",
            "specs/sub/b.yml:5: volumes.data: 'data' is defined twice: also at specs/a.yaml:3",
        ],
    ),
    case(
        "invalid-docker-name-key",
        spec("""
            version: 1
            containers:
              my web:
                image: httpd:2.4
            """),
        [f"""{F}:3: containers["my web"]: 'my web' is not a valid Docker name ({DOCKER_NAME})"""],
    ),
    case(
        "one-letter-volume-name",
        spec("""
            version: 1
            volumes:
              a: {}
            """),
        [f"{F}:3: volumes.a: 'a' is not a valid Docker name ({DOCKER_NAME})"],
    ),
    case(
        "invalid-backup-volume-name",
        spec("""
            version: 1
            backups:
              nightly:
                volumes: ["-data"]
            """),
        [f"{F}:4: backups.nightly.volumes[0]: '-data' is not a valid Docker name ({DOCKER_NAME})"],
    ),
    case(
        "upper-case-image-key",
        spec("""
            version: 1
            images:
              HtDocs:
                context: ./htdocs
                path: /usr/local/apache2/htdocs
            """),
        [
            f"{F}:3: images.HtDocs: 'HtDocs' is not a valid image key "
            "(lower case; must match ^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$)"
        ],
        dirs=("specs/htdocs",),
    ),
    case(
        "reserved-dsr-label",
        spec("""
            version: 1
            volumes:
              data:
                labels:
                  team: web
                  dsr.managed: "true"
            """),
        [
            f"{F}:4: volumes.data.labels: "
            "label 'dsr.managed' uses the prefix 'dsr.', which dsr reserves"
        ],
    ),
    # --- projects ---------------------------------------------------------------------
    case(
        "project-disagreement-across-files",
        {
            "a.yaml": "version: 1\nproject: web\n",
            "b.yaml": "version: 1\n\nproject: api\n",
        },
        [
            "specs/b.yaml:3: project: 'api' differs from 'web' at specs/a.yaml:2; "
            "all files of a spec set must agree"
        ],
    ),
    case(
        "project-option-disagrees-with-spec",
        "version: 1\nproject: web\n",
        [f"{F}:2: project: 'web' differs from --project api"],
        project="api",
    ),
    # --- variables --------------------------------------------------------------------
    case(
        "unset-variable",
        spec("""
            version: 1
            containers:
              web1:
                image: ${HTTPD_IMAGE}
            """),
        [
            f"{F}:4: containers.web1.image: "
            "variable HTTPD_IMAGE is not set and has no default (use ${HTTPD_IMAGE:-…})"
        ],
        env={"HTTPD_TAG": "2.4"},
    ),
    case(
        "unset-variable-in-short-mount",
        spec("""
            version: 1
            volume_containers:
              vc_data:
                mounts: ["${HTDOCS}:/usr/local/apache2/htdocs"]
            """),
        # Only the cause: the short form's own error would quote what the expansion left.
        [
            f"{F}:4: volume_containers.vc_data.mounts[0]: "
            "variable HTDOCS is not set and has no default (use ${HTDOCS:-…})",
        ],
    ),
    case(
        "invalid-variable-reference",
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:${1TAG}
            """),
        [
            f"{F}:4: containers.web1.image: "
            "'httpd:${1TAG}' is neither a key of images nor a valid image reference",
            f"{F}:4: containers.web1.image: invalid variable reference '${{1TAG}}'",
        ],
    ),
    case(
        "default-used-when-unset-is-valid",
        spec("""
            version: 1
            containers:
              web1:
                image: ${HTTPD_IMAGE:-httpd:2.4}
                mounts: ["${HTDOCS:-./htdocs}:/usr/local/apache2/htdocs:ro"]
            """),
        [],
        dirs=("specs/htdocs",),
    ),
    case(
        "variable-set-in-env-is-valid",
        spec("""
            version: 1
            containers:
              web1:
                image: ${HTTPD_IMAGE}
            """),
        [],
        env={"HTTPD_IMAGE": "httpd:2.4"},
    ),
    # --- host paths -------------------------------------------------------------------
    case(
        "missing-single-file-bind-short-form",
        spec("""
            version: 1
            containers:
              web-about:
                image: httpd:2.4
                mounts:
                  - ./htdocs-extra/about.html:/usr/local/apache2/htdocs/about.html:ro
            """),
        [
            f"{F}:6: containers.web-about.mounts[0].source: "
            f"$TMP/specs/htdocs-extra/about.html {MISSING}"
        ],
        dirs=("specs/htdocs-extra",),
        absent=("specs/htdocs-extra/about.html",),
    ),
    case(
        "missing-directory-without-create",
        spec("""
            version: 1
            containers:
              registry:
                image: registry:2
                mounts:
                  - type: bind
                    source: ./myregistry
                    target: /var/lib/registry
            """),
        [f"{F}:7: containers.registry.mounts[0].source: $TMP/specs/myregistry {MISSING}"],
        absent=("specs/myregistry",),
    ),
    case(
        "missing-directory-with-create-is-valid-and-not-created",
        spec("""
            version: 1
            containers:
              registry:
                image: registry:2
                mounts:
                  - type: bind
                    source: ./myregistry
                    target: /var/lib/registry
                    create: true
            """),
        [],
        absent=("specs/myregistry",),
    ),
    case(
        "policy-refuses-etc",
        spec("""
            version: 1
            volume_containers:
              vc_conf:
                mounts: ["/etc:/host/etc:ro"]
            """),
        [
            f"{F}:4: volume_containers.vc_conf.mounts[0].source: "
            f"/etc is under the protected /etc; {REFUSED}"
        ],
    ),
    case(
        "policy-refuses-under-var-lib-docker",
        spec("""
            version: 1
            volume_containers:
              vc_conf:
                mounts: ["/var/lib/docker/volumes/x:/x"]
            """),
        [
            f"{F}:4: volume_containers.vc_conf.mounts[0].source: "
            f"/var/lib/docker/volumes/x is under the protected /var/lib/docker; {REFUSED}"
        ],
    ),
    case(
        "policy-refuses-docker-socket",
        spec("""
            version: 1
            containers:
              portainer:
                image: portainer/portainer-ce:2.19
                mounts:
                  - /var/run/docker.sock:/var/run/docker.sock
            """),
        [
            f"{F}:6: containers.portainer.mounts[0].source: /var/run/docker.sock{SOCKET_VIA} "
            f"is the Docker socket; {REFUSED}"
        ],
    ),
    case(
        "policy-refuses-host-root",
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:2.4
                mounts:
                  - type: bind
                    source: /
                    target: /host
                    read_only: true
            """),
        [f"{F}:7: containers.web1.mounts[0].source: / is the host's root; {REFUSED}"],
    ),
    case(
        "policy-refuses-link-into-etc",
        spec("""
            version: 1
            volume_containers:
              vc_conf:
                mounts: ["./conf:/conf"]
            """),
        [
            f"{F}:4: volume_containers.vc_conf.mounts[0].source: $TMP/specs/conf resolves "
            f"to /etc, which is under the protected /etc; {REFUSED}"
        ],
        links={"specs/conf": "/etc"},
    ),
    case(
        "policy-refuses-backup-path",
        spec("""
            version: 1
            backups:
              config:
                paths: [/etc/ssl]
            """),
        [f"{F}:4: backups.config.paths[0]: /etc/ssl is under the protected /etc; {REFUSED}"],
    ),
    case(
        "policy-file-allows-etc",
        spec("""
            version: 1
            volume_containers:
              vc_conf:
                mounts: ["/etc:/host/etc:ro"]
            """),
        [],
        policy="allow: [/etc]\n",
    ),
    case(
        "policy-file-limits-bind-roots",
        spec("""
            version: 1
            volume_containers:
              vc_data:
                mounts: ["./htdocs:/srv"]
            """),
        [
            f"{F}:4: volume_containers.vc_data.mounts[0].source: $TMP/specs/htdocs is "
            "outside the allowed roots /srv, /home (the policy admin/policy.yaml)"
        ],
        dirs=("specs/htdocs",),
        policy="bind_roots: [/srv, /home/]\n",
    ),
    case(
        "image-context-missing",
        spec("""
            version: 1
            images:
              htdocs:
                context: ./htdocs
                path: /usr/local/apache2/htdocs
            """),
        [f"{F}:4: images.htdocs.context: $TMP/specs/htdocs does not exist"],
    ),
    case(
        "image-context-is-a-file",
        spec("""
            version: 1
            images:
              htdocs:
                context: ./index.html
                path: /usr/local/apache2/htdocs
            """),
        [f"{F}:4: images.htdocs.context: $TMP/specs/index.html is not a directory"],
        touch=("specs/index.html",),
    ),
    # --- volumes and backups ----------------------------------------------------------
    case(
        "external-volume-with-reclaim",
        spec("""
            version: 1
            volumes:
              shared-certs:
                external: true
                reclaim: delete
            """),
        [
            f"{F}:5: volumes.shared-certs.reclaim: 'reclaim' has no effect on an external "
            "volume, which dsr never creates, changes or removes"
        ],
    ),
    case(
        "invalid-cron",
        spec("""
            version: 1
            backups:
              nightly:
                paths: [/srv]
                schedule: "0 25 * * *"
            """),
        [f"{F}:5: backups.nightly.schedule: '0 25 * * *' is not a valid cron expression"],
    ),
    case(
        "invalid-keep-duration",
        spec("""
            version: 1
            backups:
              nightly:
                paths: [/srv]
                keep: {within: 2w}
            """),
        [
            f"{F}:5: backups.nightly.keep.within: "
            "'2w' is not a duration like 1y2m3d4h (years, months, days, hours)"
        ],
    ),
    case(
        "keep-count-below-minus-one",
        spec("""
            version: 1
            backups:
              nightly:
                paths: [/srv]
                keep:
                  daily: 7
                  last: -2
            """),
        [f"{F}:7: backups.nightly.keep.last: must be -1 or more (-1 keeps all), not a number (-2)"],
    ),
    case(
        "backup-without-volumes-or-paths",
        spec("""
            version: 1
            backups:
              nightly:
                schedule: "0 3 * * *"
            """),
        [f"{F}:3: backups.nightly: a backup needs at least one of volumes or paths"],
    ),
    # --- containers -------------------------------------------------------------------
    case(
        "bad-port",
        spec("""
            version: 1
            containers:
              registry:
                image: registry:2
                ports: ["5000:5000", "5000-tcp"]
            """),
        [
            f"{F}:5: containers.registry.ports: "
            "'5000-tcp' is not [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"
        ],
    ),
    case(
        "port-out-of-range",
        spec("""
            version: 1
            containers:
              registry:
                image: registry:2
                ports: ["70000:5000"]
            """),
        [f"{F}:5: containers.registry.ports: '70000:5000': a port number is at most 65535"],
    ),
    case(
        "bad-restart",
        spec("""
            version: 1
            containers:
              registry:
                image: registry:2
                restart: on-failure:x
            """),
        [
            f"{F}:5: containers.registry.restart: "
            "'on-failure:x': expected no, always, unless-stopped or on-failure[:N]"
        ],
    ),
    case(
        "env-list-item-without-equals",
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:2.4
                env: [LANG=C, DEBUG]
            """),
        [f"{F}:5: containers.web1.env: env item 'DEBUG' is not KEY=VALUE"],
    ),
    case(
        "several-problems-in-one-file-all-reported",
        spec("""
            version: 1
            volumes:
              data:
                reclaim: never
            containers:
              web1:
                image: httpd:2.4
                mounts: [dta:/srv]
              web2:
                image: httpd:2.4
                volumes_from: [web3]
            """),
        [
            f"{F}:4: volumes.data.reclaim: must be 'retain', 'delete' or "
            "'backup-then-delete', not 'never'",
            f"{F}:8: containers.web1.mounts[0].source: "
            "volume 'dta' is not defined; did you mean 'data'?",
            f"{F}:11: containers.web2.volumes_from[0]: "
            "container 'web3' is not defined; did you mean 'web1'?",
        ],
    ),
]


def snapshot(root: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path below ``root`` with whether it is a folder, its size and its mtime."""
    out = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        out[str(path.relative_to(root))] = (path.is_dir(), info.st_size, info.st_mtime_ns)
    return out


def write_case(root: Path, c: Case) -> None:
    for name, text in c.files.items():
        file = root / "specs" / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    (root / "specs").mkdir(exist_ok=True)
    for folder in c.dirs:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name in c.touch:
        (root / name).write_text("<h1>hello</h1>\n")
    for link, target in c.links.items():
        (root / link).symlink_to(target)
    if c.policy is not None:
        (root / "admin").mkdir()
        (root / "admin" / "policy.yaml").write_text(c.policy)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return Path(os.getcwd())


@pytest.mark.parametrize("c", CASES)
def test_validate_reports_exactly(c: Case, workdir: Path) -> None:
    write_case(workdir, c)
    before = snapshot(workdir)
    policy = load_policy("admin/policy.yaml" if c.policy is not None else None, ("specs",))
    try:
        load_spec("specs", project=c.project, policy=policy, env=c.env)
        lines: list[str] = []
    except SpecError as err:
        lines = [str(issue).replace(str(workdir), "$TMP") for issue in err.issues]
    assert lines == c.expected
    assert snapshot(workdir) == before, "validating changed the host"
    for path in c.absent:
        assert not os.path.lexists(workdir / path)


def test_at_least_35_invalid_cases() -> None:
    assert sum(1 for p in CASES if p.values[0].expected) >= 35


def test_policy_file_inside_spec_directory_is_refused(workdir: Path) -> None:
    (workdir / "specs").mkdir()
    (workdir / "specs" / "spec.yaml").write_text("version: 1\n")
    (workdir / "specs" / "policy.yaml").write_text("allow: [/etc]\n")
    before = snapshot(workdir)
    with pytest.raises(PolicyError) as raised:
        load_policy("specs/policy.yaml", ("specs",))
    assert str(raised.value) == (
        "specs/policy.yaml: the policy file lies in the spec directory specs; an admin "
        "policy must live outside the specs it governs"
    )
    # A single spec file: its folder is the spec directory.
    with pytest.raises(PolicyError):
        load_policy("specs/policy.yaml", ("specs/spec.yaml",))
    assert snapshot(workdir) == before


def test_invalid_policy_file_is_a_policy_error(workdir: Path) -> None:
    (workdir / "specs").mkdir()
    (workdir / "policy.yaml").write_text("allow: [etc]\n")
    with pytest.raises(PolicyError, match="'etc' is not an absolute path"):
        load_policy("policy.yaml", ("specs",))


def test_policy_next_to_a_missing_spec_path_is_not_refused(workdir: Path) -> None:
    # A mistyped PATH must be reported as missing, not as holding the policy file.
    (workdir / "policy.yaml").write_text("allow: [/etc]\n")
    assert load_policy("policy.yaml", ("specz",)).allow == ("/etc",)


# --- the command line ----------------------------------------------------------------------


def dsr(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dsr_in_process(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``dsr ARGS`` through the entry point itself (exit code mapping included)."""
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def test_cli_invalid_prints_sorted_lines_and_exits_1(workdir: Path) -> None:
    specs = workdir / "specs"
    (specs / "sub").mkdir(parents=True)
    (specs / "b.yaml").write_text(
        spec("""
            version: 1
            containers:
              web1:
                image: httpd:2.4
                state: stopped
                volumes_from: [vc]
            """)
    )
    (specs / "a.yaml").write_text(
        spec("""
            version: 1
            volumes:
              data:
                drivr: local
              logs:
                reclaim: never
            """)
    )
    (specs / "sub" / "c.yml").write_text("version: 2\n")
    result = dsr("validate", "specs", cwd=workdir)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""  # diagnostics on stderr, as every command writes them
    assert result.stderr.splitlines() == [
        "specs/a.yaml:4: volumes.data: unknown key 'drivr'; did you mean 'driver'?",
        "specs/a.yaml:6: volumes.logs.reclaim: must be 'retain', 'delete' or "
        "'backup-then-delete', not 'never'",
        "specs/b.yaml:5: containers.web1.state: must be 'running' or 'created', not 'stopped'",
        "specs/sub/c.yml:1: version: must be 1, not a number (2)",
    ]


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_cli_engine_commands_refuse_an_invalid_spec_before_the_engine(
    workdir: Path, command: str
) -> None:
    """Same lines as validate, on stderr, and no engine is ever asked (none answers here)."""
    specs = workdir / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text("version: 1\nvolumes:\n  data:\n    drivr: local\n")
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", command, "specs"],
        cwd=workdir,
        env={k: v for k, v in env.items() if k != "DSR_STATE_DIR"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "specs/a.yaml:4: volumes.data: unknown key 'drivr'; did you mean 'driver'?"
    ]


def test_cli_valid_prints_counts_and_exits_0(workdir: Path) -> None:
    specs = workdir / "web"
    (specs / "htdocs").mkdir(parents=True)
    (specs / "web.yaml").write_text(
        spec("""
            version: 1
            volumes:
              data: {}
              logs: {}
            volume_containers:
              vc_data:
                mounts: [./htdocs:/srv, /var/cache/app]
            containers:
              web1:
                image: httpd:2.4
                volumes_from: [vc_data]
            backups:
              nightly:
                volumes: [data]
            """)
    )
    result = dsr("validate", "web", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == (
        "valid: 1 file: 2 volumes, 0 images, 1 volume container, 1 container, 1 backup "
        "(project web)\n"
    )


def test_cli_policy_in_spec_directory_exits_1(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "specs").mkdir()
    (workdir / "specs" / "spec.yaml").write_text("version: 1\n")
    (workdir / "specs" / "policy.yaml").write_text("allow: [/etc]\n")
    code, out, err = dsr_in_process(
        "validate", "--policy", "specs/policy.yaml", "specs", capsys=capsys
    )
    assert (code, out) == (1, "")
    assert err == (
        "dsr: specs/policy.yaml: the policy file lies in the spec directory specs; an admin "
        "policy must live outside the specs it governs\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("validate",), id="missing-path"),
        pytest.param(("validate", "--bogus", "specs"), id="unknown-option"),
        pytest.param(("--log-format", "xml", "validate", "specs"), id="bad-choice"),
        pytest.param(("valdate", "specs"), id="unknown-command"),
    ],
)
def test_cli_usage_error_exits_1_not_2(
    args: tuple[str, ...], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = dsr_in_process(*args, capsys=capsys)
    assert code == 1
    assert "Error:" in err


def test_cli_schema_is_draft_2020_12_and_checks_specs(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = dsr_in_process("schema", capsys=capsys)
    assert code == 0, err
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    valid = yaml.safe_load(
        spec("""
            version: 1
            project: web
            x-defaults: {image: "httpd:2.4"}
            volumes:
              registry-data: {reclaim: backup-then-delete}
            images:
              htdocs: {context: ./htdocs, path: /usr/local/apache2/htdocs}
            volume_containers:
              vc_data:
                image: htdocs
                mounts: ["/srv/htdocs:/usr/local/apache2/htdocs:ro", /var/cache/app,
                         {type: volume, source: registry-data, target: /opt/tools}]
            containers:
              web1:
                image: httpd:2.4
                command: httpd-foreground
                env: [LANG=C]
                mounts: [{type: tmpfs, target: /tmp/cache}]
                volumes_from: [vc_data, "vc_data2:ro"]
            backups:
              nightly:
                volumes: [registry-data]
                keep: {last: 3, within: 2d}
            """)
    )
    assert list(validator.iter_errors(valid)) == []
    for seed in sorted(SEED.glob("*.yaml")):
        assert list(validator.iter_errors(yaml.safe_load(seed.read_text()))) == [], seed
    unknown = {"version": 1, "volumes": {"data": {"drivr": "local"}}}
    errors = list(validator.iter_errors(unknown))
    assert [e.message for e in errors] == [
        "Additional properties are not allowed ('drivr' was unexpected)"
    ]
    assert not validator.is_valid({"version": 1, "volume": {}})
