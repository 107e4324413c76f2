"""``cluster.kind: address``: connect to a running Dask scheduler (SPEC §11)."""

from __future__ import annotations

from distributed import Client

from survey_scale.config import AddressClusterConfig


def start(config: AddressClusterConfig) -> tuple[Client, None]:
    """A client of the scheduler at ``config.scheduler`` (the cluster is not ours to close)."""
    return Client(config.scheduler), None
