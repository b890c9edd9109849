"""Load from wrk: one Lua script per cell, one connection per wrk thread.

Every wrk thread owns exactly one connection, so its requests and responses alternate and
the script knows which request each response answers: the full online loop sends a
prediction with an id, waits for it, then sends the ground truth for that id. The script
counts acknowledged predictions and learns per thread and prints them, with wrk's latency
percentiles, as one JSON line that :func:`run` parses.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import threading
from pathlib import Path
from typing import Any

import orjson

__all__ = ["BATCH_SIZE", "Load", "run", "run_spread", "write_samples"]

_MARK = "BENCH-RESULT "

# Samples per request in the ``batch`` mode (riverbed's learn/many): as many as the
# embedded engine's receipt window, so that both group the same number of samples a commit.
BATCH_SIZE = 256

_SCRIPT = r"""
local data = dofile("%(samples)s")
local feats, labels = data.features, data.labels
local n = #feats
local mode = "%(mode)s"
local prefix = "%(prefix)s"
local batch = %(batch)d
local conns = %(connections)d
local headers = {["Content-Type"] = "application/json"}
local counter = 0
local threads = {}

%(system)s

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  -- wrk calls request() once on thread 0 before the run to check the script (and sends
  -- nothing): start that thread one request early (one sample, or a batch of them) so that
  -- its first real request starts at sample 1.
  -- Thread t takes samples t, t + C, t + 2C... of the stream (C connections), so that the
  -- threads together send the stream's first samples, in an order the server decides.
  p = 0
  if tid == 0 then
    if mode == "batch" then p = -batch else p = -1 end
  end
  i = 1
  k = 0
  phase = 0
  last = ""
  ok, bad, learned, predicted, samples = 0, 0, 0, 0, 0
end

local function next_sample()
  i = ((tid + p * conns) %% n) + 1
  p = p + 1
  return i
end

function request()
  if mode == "echo" then
    last = "echo"
    return wrk.format("POST", "/echo", headers, predict_body(feats[next_sample()], nil))
  elseif mode == "predict" then
    last = "predict"
    return wrk.format("POST", predict_path, headers, predict_body(feats[next_sample()], nil))
  elseif mode == "learn" then
    last = "learn"
    local s = next_sample()
    return wrk.format("POST", learn_x_path, headers, learn_x_body(feats[s], labels[s]))
  elseif mode == "batch" then
    last = "batch"
    local parts = {}
    for j = 1, batch do
      local s = next_sample()
      parts[j] = batch_item(feats[s], labels[s])
    end
    return wrk.format("POST", batch_path, headers, batch_body(table.concat(parts, ",")))
  else -- loop: predict with an id, then learn by that id
    if phase == 0 then
      next_sample()
      k = k + 1
      last = "predict"
      return wrk.format("POST", predict_path, headers,
        predict_body(feats[i], prefix .. tid .. "-" .. k))
    else
      last = "learn"
      return wrk.format("POST", learn_id_path, headers,
        learn_id_body(prefix .. tid .. "-" .. k, labels[i], feats[i]))
    end
  end
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    if last == "predict" then predicted = predicted + 1
    elseif last == "learn" then learned = learned + 1
    elseif last == "batch" then samples = samples + batch end
  else
    bad = bad + 1
    if bad <= 3 then io.stderr:write("status " .. status .. ": " .. body:sub(1, 300) .. "\n") end
  end
  if mode == "loop" then phase = 1 - phase end
end

function done(summary, latency, requests)
  local t = {ok = 0, bad = 0, learned = 0, predicted = 0, samples = 0}
  for _, thread in ipairs(threads) do
    for key, _ in pairs(t) do t[key] = t[key] + thread:get(key) end
  end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"duration_us": %%d, "requests": %%d, "ok": %%d, "bad": %%d, "learned": %%d, ' ..
    '"predicted": %%d, "samples": %%d, "socket_errors": %%d, "status_errors": %%d, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "mean_us": %%f}\n',
    summary.duration, summary.requests, t.ok, t.bad, t.learned, t.predicted, t.samples,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


def write_samples(path: Path, samples: list[tuple[dict[str, Any], Any]]) -> Path:
    """The data set as a Lua file: feature objects as JSON text, labels as JSON literals."""

    def lua_string(text: str) -> str:
        return "[==[" + text + "]==]"

    features = ",\n".join(lua_string(orjson.dumps(x).decode()) for x, _ in samples)
    labels = ",\n".join(lua_string(orjson.dumps(y).decode()) for _, y in samples)
    path.write_text(f"return {{features = {{\n{features}\n}}, labels = {{\n{labels}\n}}}}\n")
    return path


@dataclasses.dataclass
class Load:
    """What wrk measured in one cell."""

    seconds: float
    requests: int
    ok: int
    bad: int
    learned: int
    predicted: int
    samples: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    stderr: str
    client_cpu_seconds: float  # wrk's own user + system time

    @property
    def errors(self) -> int:
        return self.bad + self.socket_errors


def run(
    wrk: str,
    *,
    url: str,
    samples: Path,
    system_lua: str,
    mode: str,
    connections: int,
    seconds: float,
    prefix: str,
    script_path: Path,
    batch: int = 1,
) -> Load:
    script_path.write_text(
        _SCRIPT
        % {
            "samples": samples,
            "mode": mode,
            "prefix": prefix,
            "batch": batch,
            "connections": connections,
            "system": system_lua,
            "mark": _MARK,
        }
    )
    argv = [
        wrk,
        "-t",
        str(connections),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script_path),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    line = next((x for x in done.stdout.splitlines() if x.startswith(_MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    r = json.loads(line[len(_MARK) :])
    return Load(
        seconds=r["duration_us"] / 1e6,
        requests=r["requests"],
        ok=r["ok"],
        bad=r["bad"],
        learned=r["learned"],
        predicted=r["predicted"],
        samples=r["samples"],
        socket_errors=r["socket_errors"],
        p50_ms=r["p50_us"] / 1000,
        p90_ms=r["p90_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        stderr=done.stderr.strip(),
        client_cpu_seconds=client_cpu,
    )


def run_spread(
    wrk: str, *, urls: list[str], connections: int, prefix: str, script_path: Path, **cell: Any
) -> Load:
    """:func:`run` on several servers at once (a cluster's replicas; ``cell``: run's other
    arguments): one wrk a server, the connections shared out (a server gets none when there
    are fewer connections than servers), each wrk's ids prefixed apart. Counts are summed;
    each percentile is the highest of the servers' (wrk keeps no histogram to merge); the
    client CPU is all the wrk processes'."""
    if len(urls) == 1:
        return run(
            wrk,
            url=urls[0],
            connections=connections,
            prefix=prefix,
            script_path=script_path,
            **cell,
        )
    shares = [connections // len(urls) + (i < connections % len(urls)) for i in range(len(urls))]
    targets = [(url, share) for url, share in zip(urls, shares, strict=True) if share]
    results: list[Load | BaseException] = [RuntimeError("not run")] * len(targets)

    def one(i: int, url: str, share: int) -> None:
        try:
            path = script_path.with_name(f"{script_path.stem}-{i}{script_path.suffix}")
            results[i] = run(
                wrk, url=url, connections=share, prefix=f"{prefix}{i}.", script_path=path, **cell
            )
        except BaseException as exc:  # raised below, in the caller's thread
            results[i] = exc

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    threads = [threading.Thread(target=one, args=(i, *t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    loads = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        loads.append(result)
    return Load(
        seconds=max(r.seconds for r in loads),
        requests=sum(r.requests for r in loads),
        ok=sum(r.ok for r in loads),
        bad=sum(r.bad for r in loads),
        learned=sum(r.learned for r in loads),
        predicted=sum(r.predicted for r in loads),
        samples=sum(r.samples for r in loads),
        socket_errors=sum(r.socket_errors for r in loads),
        p50_ms=max(r.p50_ms for r in loads),
        p90_ms=max(r.p90_ms for r in loads),
        p99_ms=max(r.p99_ms for r in loads),
        stderr="\n".join(r.stderr for r in loads if r.stderr),
        client_cpu_seconds=after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
    )
