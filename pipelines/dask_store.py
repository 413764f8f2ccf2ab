"""The Dask store: which cluster `--dask` means, a client on it, and running plain functions there.

Besides `flows.py` (Prefect's DaskTaskRunner) this is the only module that imports Dask. What runs
on the workers are plain, importable functions of the helper modules; they receive the data's
location (a path or URL the workers can read), never the data, so nothing large passes through
the scheduler.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from configs.schema import Config, DaskConfig
from features.errors import NotaloneError

LOCAL_PREFIX = "local:"
_ADDRESS = re.compile(r"^(tcp|tls|ws|wss|inproc|ucx)://[^\s/]+$")


class DaskSchedulerError(NotaloneError):
    """`--dask` (or `dask.scheduler`) names no usable cluster."""


@dataclass(frozen=True)
class Scheduler:
    """An existing scheduler's `address`, or a local cluster of `local_workers` workers."""

    address: str | None = None
    local_workers: int | None = None

    def describe(self) -> str:
        if self.address:
            return self.address
        return f"a local cluster of {self.local_workers} one-thread workers"


def parse_scheduler(text: str) -> Scheduler:
    """`tcp://host:port` (any Dask address) or `local:N` (N >= 1), else a clear error."""
    value = text.strip()
    if value.startswith(LOCAL_PREFIX):
        count = value[len(LOCAL_PREFIX) :]
        if not count.isdigit() or int(count) < 1:
            raise DaskSchedulerError(
                f"--dask {text!r}: local:N needs a whole number of workers N >= 1, e.g. local:2"
            )
        return Scheduler(local_workers=int(count))
    if _ADDRESS.match(value):
        return Scheduler(address=value)
    raise DaskSchedulerError(
        f"--dask {text!r} is neither a scheduler address (tcp://HOST:PORT) nor local:N"
    )


def chosen_scheduler(option: str | None, config: Config) -> Scheduler | None:
    """The command line's `--dask`, else the config's `dask.scheduler`, else None (no Dask)."""
    text = option if option else config.dask.scheduler
    return parse_scheduler(text) if text else None


@contextmanager
def dask_cluster(scheduler: Scheduler, settings: DaskConfig) -> Iterator[str]:
    """The scheduler's address for the block: an existing one (checked to have a worker), or a
    LocalCluster of one-thread worker processes on 127.0.0.1 started and stopped around it.

    Steps receive this address (a string: it pickles into Prefect tasks and Dask workers) and
    open their own client with `client_at`.
    """
    from distributed import Client, LocalCluster

    if scheduler.address:
        try:
            client = Client(scheduler.address, timeout=f"{settings.connect_timeout_s}s")
        except OSError as exc:
            raise DaskSchedulerError(
                f"cannot reach the Dask scheduler at {scheduler.address}: {exc}"
            ) from exc
        try:
            client.wait_for_workers(1, timeout=settings.connect_timeout_s)
        finally:
            client.close()
        yield scheduler.address
        return
    with LocalCluster(
        n_workers=scheduler.local_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        memory_limit=settings.local_memory_limit,
    ) as cluster:
        yield cluster.scheduler_address


@contextmanager
def cluster_for(option: str | None, config: Config) -> Iterator[str | None]:
    """The chosen cluster's address for the block (see `chosen_scheduler`), or None: no Dask."""
    scheduler = chosen_scheduler(option, config)
    if scheduler is None:
        yield None
        return
    with dask_cluster(scheduler, config.dask) as address:
        yield address


@contextmanager
def client_at(address: str) -> Iterator[Any]:
    """A client on the scheduler at `address`.

    Inside a task already running on a worker (a step run by Prefect's DaskTaskRunner) it is
    the worker's client, and the task leaves the worker's thread pool while it waits: a
    one-thread worker would otherwise wait on itself for ever.
    """
    from distributed import Client, get_worker, worker_client

    try:
        get_worker()
    except ValueError:
        with Client(address) as client:
            yield client
        return
    with worker_client() as client:
        yield client


def run_each(client: Any, func: Callable[..., Any], calls: Sequence[tuple]) -> list[Any]:
    """`func(*args)` for each args tuple as one task on the cluster; results in call order.

    An exception on a worker is raised here as it was raised there (a NotaloneError stays one).
    """
    futures = [client.submit(func, *args, pure=False) for args in calls]
    try:
        return client.gather(futures)
    finally:
        for future in futures:
            future.release()


def run_one(client: Any, func: Callable[..., Any], *args: Any) -> Any:
    """`func(*args)` as one task on a worker (a query that should not run on the client)."""
    return run_each(client, func, [args])[0]


def worker_memory(client: Any) -> dict[str, int]:
    """Resident memory (bytes) of each worker process now, by worker address."""

    def rss() -> int:
        import psutil

        return psutil.Process().memory_info().rss

    return client.run(rss)


def worker_addresses(client: Any) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


@dataclass(frozen=True)
class WorkerParts:
    """Training parts held on the workers: futures of (x, y), one per worker, never on the
    client. `workers`: the worker each part is on, in part order."""

    client: Any
    xs: list
    ys: list
    workers: list[str]


def _first(pair: tuple) -> Any:
    return pair[0]


def _second(pair: tuple) -> Any:
    return pair[1]


@contextmanager
def parts_on_workers(
    address: str, reader: Callable[..., tuple], calls: Sequence[tuple]
) -> Iterator[WorkerParts]:
    """`reader(*call)` -> (x, y) for each call, each on its own worker (round robin), kept there
    for the block: the workers read their rows themselves, by location; only the calls travel.
    """
    with client_at(address) as client:
        workers = worker_addresses(client)
        placed = [workers[i % len(workers)] for i in range(len(calls))]
        pairs = [
            client.submit(reader, *call, workers=[w], allow_other_workers=False, pure=False)
            for call, w in zip(calls, placed, strict=True)
        ]
        xs = [
            client.submit(_first, f, workers=[w], allow_other_workers=False, pure=False)
            for f, w in zip(pairs, placed, strict=True)
        ]
        ys = [
            client.submit(_second, f, workers=[w], allow_other_workers=False, pure=False)
            for f, w in zip(pairs, placed, strict=True)
        ]
        try:
            yield WorkerParts(client, xs, ys, placed)
        finally:
            for future in [*xs, *ys, *pairs]:
                future.release()


def free_port_in(host: str, start: int, stop: int, taken: Sequence[int]) -> int:
    """On a worker: the first port of [start, stop) that can be bound on `host` now and is not
    `taken`. A fixed range, not one fixed port: a port LightGBM listened on a moment ago may
    stay unbindable for a while (TIME_WAIT), and the trees grow in several stages."""
    import socket

    for port in range(start, stop):
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise DaskSchedulerError(
        f"no free port in dask.lightgbm_port_base..+lightgbm_port_count ({start}-{stop - 1}) "
        f"on {host}: widen the range"
    )


def lightgbm_machines(client: Any, workers: Sequence[str], start: int, count: int) -> str:
    """LightGBM's `machines` for these workers: each listens on a port of [start, start+count)
    free on its host (a range a firewall can open), two workers of a host on different ones."""
    from urllib.parse import urlparse

    taken: dict[str, list[int]] = {}
    entries = []
    for worker in workers:
        host = urlparse(worker).hostname or ""
        used = taken.setdefault(host, [])
        port = client.submit(
            free_port_in, host, start, start + count, list(used), workers=[worker], pure=False
        ).result()
        used.append(port)
        entries.append(f"{host}:{port}")
    return ",".join(entries)


def fit_lightgbm(
    parts: WorkerParts,
    x_meta: Any,
    params: dict,
    rounds: int,
    ports: tuple[int, int] | None = None,
) -> Any:
    """A Booster of `rounds` trees grown from scratch with lightgbm.dask's DaskLGBMClassifier on
    the parts the workers hold. `ports` (first, count): LightGBM listens on ports of that range
    (else on random free ports)."""
    import dask.dataframe as dd
    import pandas as pd
    from lightgbm.dask import DaskLGBMClassifier

    x = dd.from_delayed(parts.xs, meta=x_meta, verify_meta=False)
    y_meta = pd.Series([], dtype="int64", name="label")
    y = dd.from_delayed(parts.ys, meta=y_meta, verify_meta=False)
    extra = {}
    if ports is not None:
        extra["machines"] = lightgbm_machines(parts.client, sorted(set(parts.workers)), *ports)
    model = DaskLGBMClassifier(client=parts.client, n_estimators=rounds, **params, **extra)
    model.fit(x, y)
    return model.booster_


def map_calls(address: str, func: Callable[..., Any], calls: Sequence[tuple], shared: Any) -> list:
    """`func(*call, shared)` for each call as one task on the cluster; results in call order.

    The calls carry locations (a part file, a row mask), never the data; `shared` (a model)
    goes once to every worker (broadcast)."""
    with client_at(address) as client:
        common = client.scatter(shared, broadcast=True, direct=True)
        futures = [client.submit(func, *call, common, pure=False) for call in calls]
        try:
            return client.gather(futures)
        finally:
            for future in [*futures, common]:
                future.release()
