"""The systems under test over HTTP: how to start each, create a fresh model, which routes
the load generator calls (as Lua snippets for wrk) and how to read back what it learned."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import environments
from benchmarks.servers import Server, Servers, free_port

__all__ = ["COMPAT_VIEWS", "SYSTEMS", "CompatView", "RiverbedScaleOut", "System"]

ROOT = environments.ROOT
REPO = ROOT.parent

# The model every system serves, as Python source so that each system's own interpreter
# builds the same object.
MODEL_SOURCE = (
    "from river import linear_model, preprocessing\n"
    "model = preprocessing.StandardScaler() | linear_model.LogisticRegression()\n"
)
RIVERBED_SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}


def call(port: int, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/octet-stream" if raw else "application/json"}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path} -> {response.status}: {payload[:500]!r}")
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return payload.decode()


def dill_model(python: Path) -> bytes:
    """The benchmark model pickled with dill by the peer's own interpreter."""
    code = MODEL_SOURCE + "import dill, sys\nsys.stdout.buffer.write(dill.dumps(model))\n"
    return subprocess.run([str(python), "-c", code], capture_output=True, check=True).stdout


class System:
    name: str
    label: str
    health = "/health"
    modes: tuple[str, ...] = ("predict", "loop", "learn")
    lua: str
    # Does one connection see its samples learned in stream order before its next
    # prediction (so its metrics must equal river's exactly)? Not where the predictions
    # come from a copy that follows the learner (a scale-out replica).
    ordered_alone = True

    def __init__(self, work: Path) -> None:
        self.work = work / self.name
        if self.work.exists():  # every run starts from empty stores
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self.port = free_port()
        self.server: Server | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def cwd(self) -> Path:
        return REPO

    def start(self) -> Server:
        self.server = Server(
            self.name,
            self.argv(),
            port=self.port,
            cwd=self.cwd(),
            env=self.env(),
            health=self.health,
            log_path=self.work / "server.log",
        )
        self.server.wait_ready()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def lua_for(self, model: str) -> str:
        return self.lua.replace("MODEL", model)

    @property
    def measured(self) -> Server | Servers:
        """The processes whose CPU and memory a cell measures."""
        assert self.server is not None
        return self.server

    def urls(self) -> list[str]:
        """Where the load goes: one server here, a cluster's replicas elsewhere."""
        return [f"http://127.0.0.1:{self.port}"]

    def counters(self) -> dict[str, float]:
        """Cumulative costs outside the server's own CPU, read before and after a cell (a
        cell records their growth per request); none here."""
        return {}

    def model_name(self, mode: str, connections: int, repeat: int) -> str:
        """The fresh model a cell uses (systems sharing a server name theirs apart)."""
        return f"bench-{mode}-c{connections}-r{repeat}"

    def prepare(self, model: str) -> None:
        """Create a fresh, untrained model named ``model``."""

    def state(self, model: str) -> dict[str, Any]:
        """{"learns": int | None, "predictions": int | None, "metrics": {name: value}}."""
        raise NotImplementedError


class Echo(System):
    name, label = "echo", "Starlette echo (ceiling)"
    modes = ("echo",)
    lua = """
function predict_body(x, id) return '{"features":' .. x .. '}' end
"""

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.echo:app",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]

    def state(self, model: str) -> dict[str, Any]:
        return {"learns": None, "predictions": None, "metrics": {}}


class Riverbed(System):
    name, label = "riverbed", "riverbed (HTTP, durable SQLite)"
    # ws, ws-many: the WebSocket /v1/ws, driven by benchmarks/wsload.py rather than wrk
    modes = ("predict", "loop", "learn", "batch", "ws", "ws-many")
    # batch: POST learn/many with items {features, ground_truth}; each item is scored with
    # the model's prediction before it learns (progressive validation), like river's loop.
    lua = """
predict_path = "/v1/models/MODEL/predict"
learn_id_path = "/v1/models/MODEL/learn"
learn_x_path = "/v1/models/MODEL/learn"
batch_path = "/v1/models/MODEL/learn/many"
function batch_item(x, y) return '{"features":' .. x .. ',"ground_truth":' .. y .. '}' end
function batch_body(items) return '{"items":[' .. items .. ']}' end
function predict_body(x, id)
  if id then return '{"id":"' .. id .. '","features":' .. x .. '}' end
  return '{"features":' .. x .. '}'
end
function learn_id_body(id, y, x) return '{"id":"' .. id .. '","ground_truth":' .. y .. '}' end
function learn_x_body(x, y) return '{"features":' .. x .. ',"ground_truth":' .. y .. '}' end
"""

    def argv(self) -> list[str]:
        return [
            str(Path(sys.executable).parent / "riverbed"),
            "serve",
            "--database",
            str(self.work / "riverbed.db"),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]

    def prepare(self, model: str) -> None:
        call(self.port, "POST", "/v1/models", {"name": model, "spec": RIVERBED_SPEC})

    def state(self, model: str) -> dict[str, Any]:
        stats = call(self.port, "GET", f"/v1/models/{model}/stats")
        metrics = call(self.port, "GET", f"/v1/models/{model}/metrics")
        return {
            "learns": stats["n_learns"],
            "predictions": stats["n_predictions"],
            "metrics": metrics["metrics"],
        }


class RiverbedPostgres(Riverbed):
    """The same riverbed server on PostgreSQL instead of its SQLite file: a fresh database
    on the server at ``RIVERBED_BENCH_POSTGRES`` (default postgresql://postgres@127.0.0.1:5432,
    as the tests use), made for the run and dropped after it. Its predict and online-loop
    cells sit beside the SQLite ones of the same run (benchmarks/report.py's postgres
    ratios)."""

    name, label = "riverbed-postgresql", "riverbed (HTTP, durable PostgreSQL)"
    modes = ("predict", "loop")
    DATABASE = "riverbed_bench"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        server = os.environ.get("RIVERBED_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
        self.admin = f"{server.rstrip('/')}/postgres"
        self.url = f"{server.rstrip('/')}/{self.DATABASE}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql)

    def argv(self) -> list[str]:
        argv = super().argv()
        argv[argv.index("--database") + 1] = self.url
        return argv

    def start(self) -> Server:
        self._admin(f'DROP DATABASE IF EXISTS "{self.DATABASE}" WITH (FORCE)')
        self._admin(f'CREATE DATABASE "{self.DATABASE}"')
        return super().start()

    def stop(self) -> None:
        super().stop()
        self._admin(f'DROP DATABASE IF EXISTS "{self.DATABASE}" WITH (FORCE)')

    def counters(self) -> dict[str, float]:
        """The CPU seconds of the PostgreSQL backends connected to this system's database
        (from /proc: the server's work for it, on the machine's shared PostgreSQL), and
        their number."""
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            pids = [
                r[0]
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.DATABASE,)
                ).fetchall()
            ]
        return {"postgres_cpu_s": sum(_cpu_seconds(pid) for pid in pids)}


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:  # gone: a backend that closed takes its CPU time with it
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RiverbedScaleOut(RiverbedPostgres):
    """docs/scale-out.md's cluster on this machine: two ``riverbed serve --broker``
    replicas and one ``riverbed learner`` on a fresh PostgreSQL database (as
    ``riverbed-postgresql``'s, on the same server) and a redis-server of its own with the
    docs' durable settings (``appendonly yes``, ``appendfsync always``) on a free port. The
    load is spread over both replicas (benchmarks/load.py's run_spread); its CPU is the
    replicas', the learner's and Redis's (each also by name); a cell's learns are counted
    in the learn log once the learner has applied them all and both replicas serve them."""

    name = "riverbed-scaleout"
    label = "riverbed scale-out (2 replicas + 1 learner, PostgreSQL, Redis)"
    modes = ("predict", "loop")
    DATABASE = "riverbed_bench_scaleout"
    ordered_alone = False
    REPLICAS = 2

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.broker = ""
        self.ports = [self.port] + [free_port() for _ in range(self.REPLICAS - 1)]
        self.group: Servers | None = None
        self._retired_cpu = 0.0  # of learners stopped
        self._learners = 0

    def _redis(self) -> Server:
        import redis

        directory = self.work / "redis"
        directory.mkdir()
        port = free_port()
        argv = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
        ]  # fmt: skip
        server = Server("redis", argv, port=port, cwd=directory, log_path=self.work / "redis.log")
        self.broker = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(self.broker)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                client.close()
                return server
            except redis.RedisError:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start; see {server.log_path}"
                    ) from None
                time.sleep(0.05)

    def _replica(self, i: int) -> Server:
        port = self.ports[i]
        argv = super().argv()
        argv[argv.index("--port") + 1] = str(port)
        server = Server(
            f"replica-{i}",
            [*argv, "--broker", self.broker],
            port=port,
            cwd=REPO,
            log_path=self.work / f"replica-{i}.log",
        )
        server.wait_ready()
        return server

    def _learner(self) -> Server:
        riverbed = str(Path(sys.executable).parent / "riverbed")
        argv = [riverbed, "learner", "--database", self.url, "--broker", self.broker]
        self._learners += 1
        server = Server(
            "learner",
            [*argv, "--name", "bench", "--log-level", "warning"],
            port=0,
            cwd=REPO,
            log_path=self.work / f"learner-{self._learners}.log",
        )

        def up() -> bool:
            if server.process.poll() is not None:
                raise RuntimeError(f"the learner exited; see {server.log_path}")
            found = call(self.port, "GET", "/v1/cluster")
            return any(m["id"] == "bench" and m["alive"] for m in found["learners"])

        _wait(up, 60, "the learner to join")
        return server

    def start(self) -> Server:
        self._admin(f'DROP DATABASE IF EXISTS "{self.DATABASE}" WITH (FORCE)')
        self._admin(f'CREATE DATABASE "{self.DATABASE}"')
        servers = [self._redis()]
        try:
            servers.append(self._replica(0))  # creates the tables the learner reads
            servers.append(self._learner())
            servers += [self._replica(i) for i in range(1, self.REPLICAS)]
        except BaseException:
            Servers(servers).stop()
            raise
        self.group = Servers(servers)
        self.server = servers[1]  # the first replica: where models are created
        return self.server

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop()
        self._admin(f'DROP DATABASE IF EXISTS "{self.DATABASE}" WITH (FORCE)')

    @property
    def measured(self) -> Servers:
        assert self.group is not None
        return self.group

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def lease(self, model: str) -> dict[str, Any]:
        """The model's entry in the cluster's status (learner, n_learns, lag_learns)."""
        found = call(self.port, "GET", "/v1/cluster")
        return next((m for m in found["models"] if m["model"] == model), {})

    def prepare(self, model: str) -> None:
        """A fresh model, held by the learner before the load starts (it takes a new
        model's lease at its next round, every lease_seconds / 3)."""
        super().prepare(model)
        _wait(lambda: self.lease(model).get("learner") == "bench", 60, f"the lease of {model}")

    def state(self, model: str) -> dict[str, Any]:
        """Once the stream is drained and both replicas serve every learn the learner
        committed: the learns and predictions counted in the database, the log checked
        (seqs 1..n, no prediction learned twice), the metrics served by the last replica."""
        import psycopg

        def settled() -> bool:
            lease = self.lease(model)
            served = [call(p, "GET", f"/v1/models/{model}/stats")["n_learns"] for p in self.ports]
            return lease.get("lag_learns") == 0 and all(n == lease["n_learns"] for n in served)

        problems = [] if _wait(settled, 120, "the cluster to settle") else ["never settled"]
        with psycopg.connect(self.url) as conn:
            seqs = [
                r[0]
                for r in conn.execute(
                    "SELECT seq FROM learns WHERE model = %s ORDER BY seq", (model,)
                ).fetchall()
            ]
            labelled = conn.execute(
                "SELECT count(prediction_id), count(DISTINCT prediction_id) FROM learns"
                " WHERE model = %s",
                (model,),
            ).fetchone()
            predictions = conn.execute(
                "SELECT count(*) FROM predictions WHERE model = %s", (model,)
            ).fetchone()
        assert labelled is not None and predictions is not None
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append("the learn log's seqs are not 1..n")
        if labelled[0] != labelled[1]:
            problems.append(f"{labelled[0] - labelled[1]} predictions learned twice")
        metrics = call(self.ports[-1], "GET", f"/v1/models/{model}/metrics")
        return {
            "learns": len(seqs),
            "predictions": predictions[0],
            "metrics": metrics["metrics"],
            "problems": problems,
        }

    def counters(self) -> dict[str, float]:
        """The PostgreSQL backends' CPU, and each process's own (replicas, learner, Redis;
        the learner's across restarts)."""
        found = super().counters()
        found["learner_cpu_s"] = self._retired_cpu
        for name, cpu in self.measured.cpu_by_name().items():
            found[f"{name}_cpu_s"] = found.get(f"{name}_cpu_s", 0.0) + cpu
        return found

    def restart_learner(self, *, running: bool) -> None:
        """Stop the learner (SIGTERM: it gives its leases up), and start a new one when
        ``running``."""
        group = self.measured
        for server in [s for s in group.servers if s.name == "learner"]:
            self._retired_cpu += server.cpu_seconds()
            server.stop()
            group.servers.remove(server)
        if running:
            group.servers.append(self._learner())


def _wait(check: Any, timeout: float, what: str) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            print(f"  timed out waiting for {what}", file=sys.stderr, flush=True)
            return False
        time.sleep(0.05)
    return True


class CompatView(System):
    """riverbed's own server answering an older system's predict route (its compatibility
    layer, on the fast path since issue 24 item 15): no process of its own, the ``riverbed``
    system's server and a model created there natively, so the cell differs from riverbed's
    native predict cell by the route alone."""

    modes = ("predict",)
    route = ""  # the older system's route, for the report

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.host: Riverbed | None = None

    def attach(self, host: Riverbed) -> None:
        self.host, self.port, self.server = host, host.port, host.server

    def start(self) -> Server:
        raise RuntimeError(f"{self.name} runs on the riverbed system's server: attach() it")

    def stop(self) -> None:  # the host's server is stopped with the host
        pass

    def model_name(self, mode: str, connections: int, repeat: int) -> str:
        return f"{super().model_name(mode, connections, repeat)}-{self.name}"

    def prepare(self, model: str) -> None:
        assert self.host is not None
        self.host.prepare(model)

    def state(self, model: str) -> dict[str, Any]:
        assert self.host is not None
        return self.host.state(model)


class ViaChantilly(CompatView):
    name, label = "compat-chantilly", "riverbed, chantilly's route"
    route = "POST /api/predict"
    lua = """
predict_path = "/api/predict"
function predict_body(x, id) return '{"model":"MODEL","features":' .. x .. '}' end
"""


class ViaDjangoRiverML(CompatView):
    name, label = "compat-django-river-ml", "riverbed, django-river-ml's route"
    route = "POST /api/predict/"
    lua = """
predict_path = "/api/predict/"
function predict_body(x, id) return '{"model":"MODEL","features":' .. x .. '}' end
"""


class ViaLrnstak(CompatView):
    name, label = "compat-lrnstak", "riverbed, lrnstak's route"
    route = "POST /predict/model/{name}"
    lua = """
predict_path = "/predict/model/MODEL"
function predict_body(x, id) return '{"data":[' .. x .. ']}' end
"""


class ViaBeaver(CompatView):
    name, label = "compat-beaver", "riverbed, Beaver's route"
    route = "POST /predict/{name}"
    lua = """
predict_path = "/predict/MODEL"
function predict_body(x, id) return '{"event":' .. x .. '}' end
"""


COMPAT_VIEWS: tuple[type[CompatView], ...] = (
    ViaChantilly,
    ViaDjangoRiverML,
    ViaLrnstak,
    ViaBeaver,
)


class Chantilly(System):
    name, label = "chantilly", "chantilly 0.3.0 (gunicorn)"
    health = "/api/models"
    lua = """
predict_path = "/api/predict"
learn_id_path = "/api/learn"
learn_x_path = "/api/learn"
function predict_body(x, id)
  if id then return '{"id":"' .. id .. '","model":"MODEL","features":' .. x .. '}' end
  return '{"model":"MODEL","features":' .. x .. '}'
end
function learn_id_body(id, y, x) return '{"id":"' .. id .. '","ground_truth":' .. y .. '}' end
function learn_x_body(x, y)
  return '{"model":"MODEL","features":' .. x .. ',"ground_truth":' .. y .. '}'
end
"""

    def argv(self) -> list[str]:
        venv = environments.ensure_peer("chantilly")
        return gunicorn(venv, self.port, "chantilly_app:app")

    def cwd(self) -> Path:
        return ROOT / "peers"

    def env(self) -> dict[str, str]:
        return {"SHELVE_PATH": str(self.work / "shelf")}

    def prepare(self, model: str) -> None:
        # chantilly's metrics are global: init wipes them (and every model) for a fresh run.
        call(self.port, "POST", "/api/init", {"flavor": "binary"})
        call(self.port, "POST", f"/api/model/{model}", raw=dill_model(self._python()))

    def _python(self) -> Path:
        return environments.peer_python("chantilly")

    def state(self, model: str) -> dict[str, Any]:
        stats = call(self.port, "GET", "/api/stats")
        return {
            "learns": stats["learn"]["n_calls"],
            "predictions": stats["predict"]["n_calls"],
            "metrics": call(self.port, "GET", "/api/metrics"),
        }


class DjangoRiverML(System):
    name, label = "django-river-ml", "django-river-ml 0.0.21 (gunicorn)"
    health = "/api/"
    # Learning by id goes through /api/learn/ with the identifier: the stored features and
    # prediction are used (the route insists on a features field, which the stored ones
    # override), and unlike /api/label/ it is counted in the model's stats.
    lua = """
predict_path = "/api/predict/"
learn_id_path = "/api/learn/"
learn_x_path = "/api/learn/"
function predict_body(x, id)
  if id then return '{"identifier":"' .. id .. '","model":"MODEL","features":' .. x .. '}' end
  return '{"model":"MODEL","features":' .. x .. '}'
end
function learn_id_body(id, y, x)
  return '{"identifier":"' .. id .. '","model":"MODEL","features":' .. x ..
    ',"ground_truth":' .. y .. '}'
end
function learn_x_body(x, y)
  return '{"model":"MODEL","features":' .. x .. ',"ground_truth":' .. y .. '}'
end
"""

    def argv(self) -> list[str]:
        venv = environments.ensure_peer("django-river-ml")
        return gunicorn(venv, self.port, "drm_project.wsgi")

    def cwd(self) -> Path:
        return ROOT / "peers"

    def env(self) -> dict[str, str]:
        return {"DJANGO_SETTINGS_MODULE": "drm_project.settings", "DRM_WORK_DIR": str(self.work)}

    def prepare(self, model: str) -> None:
        python = environments.peer_python("django-river-ml")
        call(self.port, "POST", f"/api/model/binary/{model}/", raw=dill_model(python))

    def state(self, model: str) -> dict[str, Any]:
        # Both routes read the model name from a JSON body, even on GET.
        stats = call(self.port, "GET", "/api/stats/", {"model": model})
        return {
            "learns": stats["learn"]["n_calls"],
            "predictions": stats["predict"]["n_calls"],
            "metrics": call(self.port, "GET", "/api/metrics/", {"model": model}),
        }


def gunicorn(venv: Path, port: int, app: str) -> list[str]:
    """One synchronous gunicorn worker: the peers keep state in a shelve file that more than
    one process (or thread) at a time would corrupt."""
    argv = [str(venv / "bin" / "gunicorn"), "--workers", "1", "--bind", f"127.0.0.1:{port}"]
    argv += ["--log-level", "warning", "--timeout", "120"]
    helptext = subprocess.run([argv[0], "--help"], capture_output=True, text=True).stdout
    if "--no-control-socket" in helptext:
        argv.append("--no-control-socket")
    return [*argv, app]


SYSTEMS: dict[str, type[System]] = {
    s.name: s
    for s in (
        Echo,
        Riverbed,
        RiverbedPostgres,
        RiverbedScaleOut,
        *COMPAT_VIEWS,
        Chantilly,
        DjangoRiverML,
    )
}
