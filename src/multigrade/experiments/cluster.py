"""Dask for sweeps: a LocalCluster of single-threaded worker processes, each pinned to its
own core, warmed up before its first run; a scheduler address checked before a client
waits on it; and the client of either (`client`). Used by sweeps, the fair protocol and
`mgdl reproduce`'s parallel seeds."""

from __future__ import annotations

import os

from multigrade.runs import cores

SCHEDULER_TIMEOUT = 10.0  # seconds a scheduler address has to answer as a Dask scheduler

# Worker processes each get one core: XLA's and BLAS's thread pools are held to one thread,
# so N workers on N cores do not fight over them.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
    # several workers sharing one GPU must not each take 75 % of its memory
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
}


# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (to return memory to the
# OS sooner). Setting it at all turns off glibc's dynamic mmap threshold, so every large
# buffer XLA allocates is a fresh mmap with its page faults: measured on 2 cores, one run
# (camera 64², MGDL 2 × [64, 64], 2 000 Adam epochs, one thread) trains in 0.95 s without
# it and 1.37-1.41 s with it at any value (64 KiB to 256 MiB). `local_cluster` unsets it;
# set the same key to null in the Dask config of any other cluster (docs/guide/sweeps.md).
NANNY_MALLOC = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def local_cluster(workers: int | None = None):
    """A LocalCluster of `workers` (default: one per core) single-threaded worker processes,
    each pinned to its own core when it runs its first task."""
    import dask
    from distributed import LocalCluster

    n = workers or len(cores()) or 1
    with dask.config.set({NANNY_MALLOC: None}):
        return LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                            dashboard_address=":0",  # any free port: sweeps side by side
                            env={**SINGLE_THREAD_ENV, "MULTIGRADE_PIN_CORES": "1"})


def pin_worker(worker=None) -> None:
    """Pins every thread of this LocalCluster worker to core `name mod cores`. Measured on 2
    cores: two unpinned JAX workers train 40 % slower each than one alone; pinned, as fast
    (benchmarks/sweep.py). Threads started later (XLA's) inherit the pin, and XLA sizes its
    thread pool by the cores it may use when it starts, so the pin must come first: XLA
    started on both cores and then pinned to one runs its 2 pool threads on 1 core (one
    run, camera 64², 2 000 epochs: 1.40 s against 0.95 s, 48 % more CPU time)."""
    if os.environ.get("MULTIGRADE_PIN_CORES") != "1" or not hasattr(os, "sched_setaffinity"):
        return
    if worker is None:
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:  # not in a worker's task
            return
    name, mine = worker.name, cores()
    if len(mine) <= 1 or not isinstance(name, int):
        return
    core = {mine[name % len(mine)]}
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), core)
        except OSError:  # a thread that ended meanwhile
            pass


def warm_worker(dask_worker=None) -> None:
    """Pins a LocalCluster worker, enables the compilation cache, imports what a run needs
    (pyplot and scikit-image's lazily loaded functions included) and starts JAX's backend:
    `client.run(warm_worker)` (which passes `dask_worker`) pays each worker's start-up
    before the first run; called with no worker, this process's."""
    pin_worker(dask_worker)
    import jax
    import matplotlib

    from multigrade.compile_cache import enable_compilation_cache

    enable_compilation_cache()
    matplotlib.use("Agg")  # as the run's figures do (multigrade.report)
    import matplotlib.pyplot  # noqa: F401
    from skimage.color import rgb2gray  # noqa: F401  (images, metrics)
    from skimage.metrics import structural_similarity  # noqa: F401
    from skimage.transform import resize  # noqa: F401

    import multigrade.experiments.runner  # noqa: F401

    jax.numpy.zeros(1).block_until_ready()


def check_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT) -> dict:
    """The identity of the Dask scheduler at `address`; a ValueError naming the address
    when nothing answers within `timeout` seconds, or something that is not a Dask
    scheduler answers (Dask's own client would wait, or misread a banner)."""
    import asyncio
    import concurrent.futures

    from distributed.comm import connect

    async def probe():
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    def ask():  # on its own thread: the caller may be inside an event loop already
        return asyncio.run(asyncio.wait_for(probe(), timeout))

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            reply = pool.submit(ask).result()
        except (asyncio.TimeoutError, TimeoutError):
            raise ValueError(f"--scheduler {address}: no Dask scheduler answered within "
                             f"{timeout:g} s") from None
        except MemoryError:  # a banner read as the length of a frame
            raise ValueError(f"--scheduler {address}: something answered that is not a "
                             "Dask scheduler") from None
        except Exception as e:  # noqa: BLE001 (refused, unreachable, another protocol, ...)
            raise ValueError(f"--scheduler {address}: cannot reach a Dask scheduler "
                             f"({type(e).__name__}: {e})") from None
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise ValueError(f"--scheduler {address}: something answered that is not a Dask "
                         "scheduler")
    return reply


def client(scheduler: str | None, workers: int | None):
    """A Dask client: of the cluster at `scheduler` (checked first: `check_scheduler`),
    or of a new `local_cluster`."""
    from distributed import Client

    if scheduler:
        check_scheduler(scheduler)
        return Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT:g}s"), None
    cluster = local_cluster(workers)
    return Client(cluster), cluster
