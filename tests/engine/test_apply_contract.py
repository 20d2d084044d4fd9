"""What a real host showed (issue 18): an empty spec set, a replace that needs its port or
name free first, drift ``docker update`` makes, and the exit codes that tell them apart."""

from __future__ import annotations

import docker
from conftest import DsrRunner, SpecWriter


def test_apply_refuses_an_empty_spec_unless_allowed(
    dsr: DsrRunner,
    tmp_spec: SpecWriter,
    prefix: str,
    docker_client: docker.DockerClient,
) -> None:
    spec = tmp_spec(f"version: 1\nvolumes:\n  {prefix}-a: {{reclaim: delete}}\n")
    dsr("apply", spec.parent, check=0)
    spec.write_text("version: 1\n")

    refused = dsr("apply", spec.parent, check=1)
    assert "--allow-empty" in refused.stderr
    assert "will be deleted" in refused.stdout  # the plan it refused is shown
    docker_client.volumes.get(f"{prefix}-a")  # nothing was changed

    # No spec file at all is an empty spec set too: the folder names the project.
    spec.unlink()
    dsr("apply", spec.parent, check=1)
    docker_client.volumes.get(f"{prefix}-a")
    dsr("apply", "--allow-empty", spec.parent, check=0)
    assert not docker_client.volumes.list(filters={"name": f"{prefix}-a"})
