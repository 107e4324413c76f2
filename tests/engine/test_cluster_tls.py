"""TLS of the local kind and the address kind's refusal of plain TCP to another host (SPEC §11).

A Dask scheduler runs whatever it is sent: on a shared login node any user who reaches a plain ``tcp://``
port on loopback can run code as the pipeline's user. The local kind therefore talks TLS with temporary
certificates (``cluster.local.tls``), and the address kind will not connect over plain TCP to another host
unless told so (``cluster.address.allow_plain_tcp``).
"""

from __future__ import annotations

import asyncio
import logging

import psutil
import pytest
from distributed import Client, Scheduler
from distributed.comm import connect

from survey_scale.config import ConfigError, load_config
from survey_scale.engine.cluster import dask_client
from survey_scale.engine.cluster.address import check_scheduler_address


def _listeners(pids: set[int]) -> list[tuple[str, int]]:
    """(ip, port) of every TCP listening socket of the processes ``pids``."""
    found = []
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:  # pragma: no cover - a worker that went away
            continue
        found += [(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
    return found


async def _answers_plain_tcp(host_port: str) -> bool:
    """Whether something at ``host_port`` answers a Dask message sent over plain TCP."""
    try:
        comm = await connect(f"tcp://{host_port}", timeout=3)
        await comm.write({"op": "identity"})
        await asyncio.wait_for(comm.read(), 3)
    except (TimeoutError, OSError):
        return False
    return True


def test_local_kind_talks_tls_on_loopback_by_default() -> None:
    config = load_config(None, {"cluster.local.n_workers": 1}).cluster
    assert config.local.processes  # the default: worker processes, which talk over sockets
    with dask_client(config) as client:
        scheduler = client.scheduler.address
        info = client.scheduler_info()
        workers = list(info["workers"])
        nannies = [w["nanny"] for w in info["workers"].values()]
        pids = {psutil.Process().pid} | {p.pid for p in psutil.Process().children(recursive=True)}
        listening = _listeners(pids)
        plain = asyncio.run(_answers_plain_tcp(scheduler.split("://", 1)[1]))
        assert client.submit(sum, [1, 2]).result() == 3  # the worker process got the certificates
    assert scheduler.startswith("tls://127.0.0.1:"), scheduler
    assert config.local.tls  # the default
    assert workers and all(a.startswith("tls://127.0.0.1:") for a in workers + nannies), workers + nannies
    assert not plain, "the scheduler answered a plain tcp:// connection"
    assert listening and all(ip in ("127.0.0.1", "::1") for ip, _ in listening), listening


def test_local_kind_without_tls_is_plain_tcp_on_loopback() -> None:
    config = load_config(None, {"cluster.local.n_workers": 1, "cluster.local.tls": False}).cluster
    with dask_client(config) as client:
        scheduler = client.scheduler.address
        workers = list(client.scheduler_info()["workers"])
    assert scheduler.startswith("tcp://127.0.0.1:") and all(a.startswith("tcp://127.0.0.1:") for a in workers)


@pytest.mark.parametrize(
    "address",
    ["tcp://127.0.0.1:8786", "tcp://127.3.4.5:8786", "tcp://localhost:8786", "tcp://[::1]:8786", "127.0.0.1:8786",
     "tls://scheduler.example.org:8786", "wss://scheduler.example.org:8786", "inproc://10.0.0.1/1/1"],
)  # fmt: skip
def test_address_kind_accepts_tls_and_loopback(address: str) -> None:
    check_scheduler_address(address, allow_plain_tcp=False)


@pytest.mark.parametrize(
    "address",
    ["tcp://10.0.0.5:8786", "tcp://scheduler:8786", "scheduler:8786", "tcp://[2001:db8::1]:8786",
     "tcp://0.0.0.0:8786", "ws://scheduler:8786", "tcp://localhost.example.org:8786"],
)  # fmt: skip
def test_address_kind_refuses_plain_tcp_to_another_host(address: str, caplog) -> None:
    with pytest.raises(ConfigError, match=r"cluster\.address\.scheduler: .*plain.*tls://.*allow_plain_tcp"):
        check_scheduler_address(address, allow_plain_tcp=False)
    with caplog.at_level(logging.WARNING, logger="survey_scale.engine.cluster.address"):
        check_scheduler_address(address, allow_plain_tcp=True)  # the explicit opt-out: a warning only
    assert "plain" in caplog.text and "allow_plain_tcp" in caplog.text


def test_address_kind_refuses_before_connecting() -> None:
    config = load_config(None, {"cluster.kind": "address", "cluster.address.scheduler": "tcp://192.0.2.1:8786"})
    assert config.cluster.address.allow_plain_tcp is False
    with pytest.raises(ConfigError, match=r"cluster\.address\.scheduler"), dask_client(config.cluster):
        pass  # pragma: no cover - never reached (192.0.2.1 is TEST-NET-1: a connection would hang)


def test_address_kind_connects_over_plain_tcp_on_loopback() -> None:
    async def serve_and_connect() -> str:
        async with Scheduler(protocol="tcp", host="127.0.0.1", port=0, dashboard=False) as s:
            config = load_config(None, {"cluster.kind": "address", "cluster.address.scheduler": s.address}).cluster
            return await asyncio.to_thread(_identify, config)

    assert asyncio.run(serve_and_connect()).startswith("tcp://127.0.0.1:")


def _identify(config) -> str:
    with dask_client(config) as client:
        assert isinstance(client, Client)
        return client.scheduler_info()["address"]
