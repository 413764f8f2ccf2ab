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


def cluster_parts(address: str) -> int:
    """How many partitions to cut a frame into for the cluster: one per worker."""
    with client_at(address) as client:
        return max(1, len(worker_addresses(client)))


def fit_lightgbm(
    address: str,
    x_parts: Sequence[Any],
    y_parts: Sequence[Any],
    params: dict,
    rounds: int,
    init_model: Any = None,
) -> Any:
    """`rounds` more trees with lightgbm.dask's DaskLGBMClassifier on the cluster; the Booster.

    Each (x, y) part (a group of whole course runs) is sent straight to one worker (scatter,
    direct): the scheduler holds only the futures. `init_model` continues an earlier Booster.
    """
    import dask.dataframe as dd
    from lightgbm.dask import DaskLGBMClassifier

    with client_at(address) as client:
        xs = client.scatter(list(x_parts), direct=True)
        ys = client.scatter(list(y_parts), direct=True)
        try:
            x = dd.from_delayed(xs, meta=x_parts[0].iloc[:0], verify_meta=False)
            y = dd.from_delayed(ys, meta=y_parts[0].iloc[:0], verify_meta=False)
            model = DaskLGBMClassifier(client=client, n_estimators=rounds, **params)
            model.fit(x, y, init_model=init_model)
            return model.booster_
        finally:
            for future in [*xs, *ys]:
                future.release()


def map_parts(address: str, func: Callable[..., Any], parts: Sequence[Any], shared: Any) -> list:
    """`func(part, shared)` for each part as one task on the cluster; results in part order.

    Each part goes straight to a worker (scatter, direct) and `shared` (a model) once to every
    worker (broadcast), so the scheduler carries only the futures.
    """
    with client_at(address) as client:
        held = client.scatter(list(parts), direct=True)
        common = client.scatter(shared, broadcast=True, direct=True)
        futures = [client.submit(func, part, common, pure=False) for part in held]
        try:
            return client.gather(futures)
        finally:
            for future in [*futures, *held, common]:
                future.release()
