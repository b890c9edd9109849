"""Training jobs' candidates on a Dask distributed cluster (``jobs_cluster``).

Without the setting a job trains its candidates one after another on its worker thread in the
serving process. With ``jobs_cluster = tcp://SCHEDULER:8786`` each candidate is one task on
the cluster's workers, all of them at once:

- the job's rows are scattered once to every worker (``broadcast``), and the tasks name that
  one copy, so a candidate's data is never shipped with it;
- each task runs :func:`riverbed.training.train` there, the code the threads run, so a job
  trained on the cluster registers the models and metrics it would have registered at home;
- progress comes back through a Dask queue and a cancel goes out through a Dask event, both
  polled a few times a second, so a running candidate stops as it does on a thread;
- the trained models come back to the serving process, which registers them exactly as
  before: nothing is registered until every candidate is back, so a job whose cluster fails
  registers nothing;
- a worker that dies mid-task is the scheduler's to handle: it runs the task again on another
  worker (``distributed.scheduler.allowed-failures`` times, 3 by default, then the job fails
  naming the candidate). Data whose every copy died with its workers is scattered again and
  the candidates resubmitted, up to :data:`ATTEMPTS` times in all.

What a worker returns is unpickled by the serving process: the cluster is as trusted as the
server's own code (docs/training.md says so). The workers need riverbed installed, the same
version as the server's; a job on a cluster whose workers differ fails saying which.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from riverbed import training
from riverbed.config import check_cluster_address
from riverbed.exceptions import InvalidData, RiverbedError, Unavailable
from riverbed.version import __version__

__all__ = ["ATTEMPTS", "Cluster"]

ATTEMPTS = 3
POLL_SECONDS = 0.2
CONNECT_SECONDS = 10.0
NO_WORKERS_SECONDS = 30.0


def _versions() -> str:
    """Run on each worker: the riverbed it imports."""
    return __version__


def _train_task(
    job: str,
    k: int,
    candidate: training.Candidate,
    dataset: training.Dataset,
    options: Mapping[str, Any],
) -> training.Outcome:
    """One candidate, run on a worker; progress and cancel through the job's queue and
    event, each touched at most every :data:`POLL_SECONDS`."""
    from distributed import Event, Queue

    queue, cancel = Queue(f"riverbed-progress-{job}"), Event(f"riverbed-cancel-{job}")
    sent, checked, stop = [0.0], [0.0], [False]

    def progress(fraction: float) -> None:
        now = time.monotonic()
        if now - sent[0] >= POLL_SECONDS:
            sent[0] = now
            queue.put((k, fraction))

    def cancelled() -> bool:
        now = time.monotonic()
        if now - checked[0] >= POLL_SECONDS:
            checked[0] = now
            stop[0] = cancel.is_set()
        return stop[0]

    return training.train(candidate, dataset, progress=progress, cancelled=cancelled, **options)


class Cluster:
    """A Dask scheduler's workers, connected to on the first job and kept."""

    def __init__(self, address: str) -> None:
        self.address = check_cluster_address(address)
        self._lock = threading.Lock()
        self._client: Any = None

    def _connect(self) -> Any:
        with self._lock:
            if self._client is not None and self._client.status == "running":
                return self._client
            try:
                from distributed import Client
            except ImportError:
                raise Unavailable(
                    "training on a cluster needs Dask: pip install 'riverbed[cluster]'"
                ) from None
            try:
                self._client = Client(self.address, timeout=CONNECT_SECONDS, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise Unavailable(
                    f"the Dask scheduler at {self.address} does not answer ({exc}); start it "
                    "with 'dask scheduler' or change jobs_cluster",
                    detail={"jobs_cluster": self.address},
                ) from None
            return self._client

    def workers(self, client: Any) -> dict[str, str]:
        """Each worker's address and its riverbed version, checked against ours."""
        deadline = time.monotonic() + NO_WORKERS_SECONDS
        while not client.scheduler_info()["workers"]:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"the Dask scheduler at {self.address} has no workers; start some with "
                    f"'dask worker {self.address}'"
                )
            time.sleep(POLL_SECONDS)
        try:
            versions: dict[str, str] = client.run(_versions)
        except ImportError:
            raise Unavailable(
                f"the workers of {self.address} cannot import riverbed; install riverbed "
                f"{__version__} where they run"
            ) from None
        wrong = {w: v for w, v in versions.items() if v != __version__}
        if wrong:
            raise Unavailable(
                f"workers of {self.address} run another riverbed than this server's "
                f"{__version__}: {', '.join(f'{w} has {v}' for w, v in sorted(wrong.items()))}",
                detail={"workers": wrong},
            )
        return versions

    def train(
        self,
        job: str,
        candidates: Sequence[training.Candidate],
        dataset: training.Dataset,
        options: Mapping[str, Any],
        *,
        progress: Callable[[int, float], None],
        cancelled: Callable[[], bool],
        log: Callable[[str], None],
    ) -> list[training.Outcome]:
        """Every candidate trained on the cluster, in the candidates' order."""
        from distributed import Event, Queue

        client = self._connect()
        queue = Queue(f"riverbed-progress-{job}", client=client)
        cancel = Event(f"riverbed-cancel-{job}", client=client)
        try:
            for attempt in range(1, ATTEMPTS + 1):
                workers = self.workers(client)
                log(f"training on the Dask cluster at {self.address} ({len(workers)} workers)")
                data = client.scatter(dataset, broadcast=True, hash=False)
                futures = [
                    client.submit(
                        _train_task,
                        job,
                        k,
                        candidate,
                        data,
                        options,
                        key=f"riverbed-train-{job}-{k}-{attempt}",
                        pure=False,
                    )
                    for k, candidate in enumerate(candidates)
                ]
                outcomes = self._gather(futures, queue, cancel, progress, cancelled, candidates)
                if outcomes is not None:
                    return outcomes
                log(f"the job's data was lost with the workers that held it (try {attempt})")
            raise Unavailable(
                f"the Dask cluster at {self.address} lost the job's data {ATTEMPTS} times"
            )
        except (OSError, TimeoutError) as exc:  # distributed's CommClosedError is an OSError
            raise Unavailable(
                f"the job lost the Dask scheduler at {self.address} ({type(exc).__name__}: "
                f"{exc}); submit it again once the scheduler is back",
                detail={"jobs_cluster": self.address},
            ) from None
        finally:
            try:
                queue.close()  # the scheduler forgets an event with no waiter by itself
            except Exception:  # noqa: S110 - the scheduler may be gone; nothing to free
                pass

    def _gather(
        self,
        futures: list[Any],
        queue: Any,
        cancel: Any,
        progress: Callable[[int, float], None],
        cancelled: Callable[[], bool],
        candidates: Sequence[training.Candidate],
    ) -> list[training.Outcome] | None:
        """The candidates' outcomes; None when their data was lost (submit them again)."""
        from distributed.client import FutureCancelledError

        while True:
            finished = all(future.done() for future in futures)
            for k, fraction in queue.get(batch=True):
                progress(k, fraction)
            if cancelled():
                cancel.set()
                for future in futures:
                    future.cancel()
                raise training.Cancelled
            if finished:
                break
            time.sleep(POLL_SECONDS)
        outcomes = []
        for k, future in enumerate(futures):
            try:
                outcomes.append(future.result())
            except FutureCancelledError:
                return None
            except InvalidData as exc:
                raise training.blame(exc, candidates[k]) from None
            except (RiverbedError, training.Cancelled):
                raise
            except Exception as exc:
                raise Unavailable(
                    f"candidate {candidates[k].name!r} failed on the cluster: "
                    f"{type(exc).__name__}: {exc}",
                    detail={"candidate": candidates[k].name},
                ) from None
            progress(k, 1.0)
        return outcomes

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
