"""``cluster.kind: address``: connect to a running Dask scheduler (SPEC §11).

A ``tls://`` scheduler is reached with the cluster's certificate files (``cluster.address.tls``). A plain
``tcp://`` (or ``ws://``) scheduler on another host is refused before any connection
(:func:`check_scheduler_address`): a Dask scheduler runs whatever it is sent, so whoever reaches its port runs
code on the workers, and nothing on the way is encrypted. ``cluster.address.allow_plain_tcp: true`` turns the
refusal into a warning, for a private network whose every machine and user is trusted. Loopback
(127.0.0.0/8, ::1, ``localhost``) is accepted: it leaves the machine no more than the local kind does.
"""

from __future__ import annotations

import ipaddress
import logging

from distributed import Client
from distributed.comm.addressing import parse_address, parse_host_port

from survey_scale.core.settings import ConfigError
from survey_scale.engine.settings import AddressClusterConfig

log = logging.getLogger(__name__)

ENCRYPTED_OR_IN_PROCESS = ("tls", "wss", "inproc")
"""Address schemes accepted to any host: Dask's encrypted comms, and in-process queues."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or a name, not resolved) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def check_scheduler_address(address: str, *, allow_plain_tcp: bool) -> None:
    """Refuse a scheduler ``address`` reached without encryption on another host (or warn when
    ``allow_plain_tcp``). An address without a scheme is Dask's default, ``tcp://``.

    Raises
    ------
    ConfigError
        If ``address`` is plain ``tcp://`` (or ``ws://``) to a host that is not loopback, and not
        ``allow_plain_tcp``; the message names ``cluster.address.scheduler`` and how to proceed.
    """
    try:
        scheme, location = parse_address(address)
        if scheme in ENCRYPTED_OR_IN_PROCESS:
            return
        host, _ = parse_host_port(location, default_port=0)
    except ValueError as exc:
        raise ConfigError(f"cluster.address.scheduler: {address}: {exc}") from exc
    if is_loopback(host):
        return
    problem = (
        f"{address} is plain {scheme}:// to another host ({host}): whoever reaches that port runs code on the "
        "workers, and nothing is encrypted"
    )
    if allow_plain_tcp:
        log.warning("cluster.address.scheduler: %s (allowed by cluster.address.allow_plain_tcp)", problem)
        return
    raise ConfigError(
        f"cluster.address.scheduler: {problem}. Start the scheduler with certificates (dask scheduler --protocol "
        "tls --tls-ca-file ... --tls-cert ... --tls-key ...) and give its tls:// address with "
        "cluster.address.tls.enabled: true and the ca_file, cert and key; or, on a private network whose every "
        "machine and user you trust, set cluster.address.allow_plain_tcp: true"
    )


def start(config: AddressClusterConfig) -> tuple[Client, None]:
    """A client of the scheduler at ``config.scheduler`` (the cluster is not ours to close).

    Raises
    ------
    ConfigError
        If the scheduler is plain ``tcp://`` on another host (:func:`check_scheduler_address`).
    """
    from survey_scale.engine.cluster import make_security

    check_scheduler_address(config.scheduler, allow_plain_tcp=config.allow_plain_tcp)
    return Client(config.scheduler, security=make_security(config.tls, "cluster.address.tls")), None
