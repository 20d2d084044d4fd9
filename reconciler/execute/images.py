"""The executors of images and networks."""

from __future__ import annotations

import contextlib
import io
import tarfile
import tempfile
import time

import docker
import docker.errors

from reconciler import dockerargs
from reconciler.errors import ApplyError
from reconciler.escape import escape_controls
from reconciler.execute.core import Executors, Run, executes, log
from reconciler.images import DOCKERFILE, write_build_context
from reconciler.plan import payloads as p
from reconciler.plan.reasons import human_size


# -- images -----------------------------------------------------------------------------------
@executes(p.ImportImage)
def import_image(ex: Executors, run: Run, op: p.ImportImage) -> None:
    repository, tag = op.params.tag.rsplit(":", 1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w"):
        pass  # an image with no files at all
    ex.api.import_image_from_data(
        buffer.getvalue(),
        repository=repository,
        tag=tag,
        changes=[f"LABEL {k}={v}" for k, v in sorted(op.params.labels.items())],
    )


@executes(p.BuildImage)
def build_image(ex: Executors, run: Run, op: p.BuildImage) -> None:
    """``docker build`` of the context, saying what it does as it goes (a large context
    takes seconds to pack and send): packing, the size sent, each build step, done."""
    params = op.params
    started = time.monotonic()
    log.info("image_build", tag=params.tag, step="packing the context", context=params.context)
    with tempfile.TemporaryFile() as context:  # on disk: contexts can be large
        digest = write_build_context(params.context, params.base, params.path, context)
        if not params.tag.endswith(f":{digest}"):
            raise ApplyError(
                f"the context {params.context} changed since the plan was made, so it no "
                f"longer makes {params.tag}; run dsr plan (or dsr apply PATH) again"
            )
        size = context.tell()
        log.info("image_build", tag=params.tag, step=f"sending {human_size(size)} to the engine")
        context.seek(0)
        output = ex.api.build(
            fileobj=context,
            custom_context=True,
            dockerfile=DOCKERFILE,
            tag=params.tag,
            labels=dict(params.labels),
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for line in output:
            if "error" in line:
                raise ApplyError(f"building {params.tag} failed: {line['error'].strip()}")
            text = str(line.get("stream") or "").strip()
            if text.startswith("Step "):  # "Step 2/4 : COPY ...": the engine's progress
                log.info("image_build", tag=params.tag, step=escape_controls(text[:200]))
    log.info("image_built", tag=params.tag, seconds=round(time.monotonic() - started, 1))


@executes(p.PullImage)
def pull_image(ex: Executors, run: Run, op: p.PullImage) -> None:
    repository, tag = dockerargs.split_reference(op.image)
    try:
        ex.api.pull(repository, tag=tag)
    except docker.errors.APIError as err:
        raise ApplyError(f"cannot pull image {op.image}: {err.explanation or err}") from err


@executes(p.RemoveImage)
def remove_image(ex: Executors, run: Run, op: p.RemoveImage) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        ex.api.remove_image(op.target)


# -- networks ---------------------------------------------------------------------------------
@executes(p.CreateNetwork)
def create_network(ex: Executors, run: Run, op: p.CreateNetwork) -> None:
    ex.api.create_network(
        op.params.name,
        driver=op.params.driver,
        internal=op.params.internal,
        labels=dict(op.params.labels),
        check_duplicate=True,
    )


@executes(p.RemoveNetwork)
def remove_network(ex: Executors, run: Run, op: p.RemoveNetwork) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        ex.api.remove_network(op.target)  # refused by Docker while in use
