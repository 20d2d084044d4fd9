"""Each S3 store's boto3 client: its own credentials, read when it is made, and one parsed
copy of botocore's service models for all (a copy each was 13 MB a store)."""

from __future__ import annotations

import resource

import pytest

from reconciler.backup.s3store import S3


def test_stores_share_botocores_models_but_not_their_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "first-secret")
    first = S3("s3://bucket-one/dsr", endpoint="http://127.0.0.1:9").client
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second-key")  # a rotated key: read afresh
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stores = [S3(f"s3://bucket-{n}/dsr", endpoint="http://127.0.0.1:9") for n in range(3)]
    clients = [store.client for store in stores] + [stores[0].quick_client]
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert all(client._loader is first._loader for client in clients)
    assert first._get_credentials().access_key == "first-key"
    assert {c._get_credentials().access_key for c in clients} == {"second-key"}
    paths = first._loader.search_paths
    assert len(paths) == len(set(paths))  # each session's own data folder listed once
    assert grown_kib < 4 * 1024  # four more clients: no model parsed again (13 MB each)
