"""``cluster.kind: address``: connect to a running Dask scheduler (SPEC §11).

A ``tls://`` scheduler is reached with the cluster's certificate files (``cluster.address.tls``).
"""

from __future__ import annotations

from distributed import Client

from survey_scale.engine.settings import AddressClusterConfig


def start(config: AddressClusterConfig) -> tuple[Client, None]:
    """A client of the scheduler at ``config.scheduler`` (the cluster is not ours to close)."""
    from survey_scale.engine.cluster import make_security

    return Client(config.scheduler, security=make_security(config.tls, "cluster.address.tls")), None
