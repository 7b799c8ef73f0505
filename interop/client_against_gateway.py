"""Drive a pyoco gateway with the original Python client, `pyoco_server.PyocoHttpClient`.

Usage: python client_against_gateway.py BASE_URL [--worker-id ID] [--tag TAG]
                                        [--original-gateway] [--only NAMES]

The client is used unchanged. Each client method is checked in its own block and gets one
`PASS <method>` or `FAIL <method>: <reason>` line, so one missing route does not hide the
others. The exit code is 1 when any check failed, 0 otherwise.

The gateway must have a worker with pyoco's built-in callables (`pyoco:echo`, `pyoco:sleep`)
serving TAG, registered under ID, with the flow `hello` of examples/flows resolvable by name.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import uuid
from typing import Any, Callable, Dict, List, Optional

import httpx
from pyoco_server import PyocoHttpClient

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}

# `a >> b`: a simple chain, read the same way by every implementation.
CHAIN_YAML = """\
version: 1
flow:
  graph: a >> b
  defaults: {greeting: hello}
tasks:
  a: {callable: "pyoco:echo", inputs: {value: "$ctx.params.greeting"}}
  b: {callable: "pyoco:echo", inputs: {value: "$node.a.output"}}
"""

# A run that changes state a few times within the client's 5 s read timeout.
SLOW_CHAIN_YAML = """\
version: 1
flow:
  graph: nap >> done
  defaults: {word: awake}
tasks:
  nap: {callable: "pyoco:sleep", inputs: {seconds: 1.0}}
  done: {callable: "pyoco:echo", inputs: {value: "$ctx.params.word"}}
"""

# A run that would take a minute unless cancelled.
LONG_YAML = """\
version: 1
flow:
  graph: long >> after
tasks:
  long: {callable: "pyoco:sleep", inputs: {seconds: 60}}
  after: {callable: "pyoco:echo", inputs: {value: "never"}}
"""


class Check(Exception):
    """A failed expectation."""


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise Check(what)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_run_id(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        uuid.UUID(v)
    except ValueError:
        return False
    return True


def wait_until(what: str, timeout: float, probe: Callable[[], Optional[Any]]) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = probe()
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 503:  # only "NATS is away" is worth waiting out
                raise
            value, last = None, exc
        except httpx.TransportError as exc:
            value, last = None, exc
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise Check(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")
        time.sleep(0.1)


class Suite:
    def __init__(
        self,
        base_url: str,
        worker_id: str,
        tag: str,
        original_gateway: bool = False,
        api_key: Optional[str] = None,
    ) -> None:
        self.client = PyocoHttpClient(base_url, api_key=api_key)
        self.original_gateway = original_gateway
        self.worker_id = worker_id
        self.tag = tag
        self.flow = f"interop-{uuid.uuid4().hex[:8]}"
        self.results: List[tuple[str, bool, str]] = []
        self.yaml_run_id: Optional[str] = None

    # -- helpers ------------------------------------------------------------------------

    def submit_yaml(self, text: str, flow_name: Optional[str] = None) -> str:
        resp = self.client.submit_run_yaml(text, flow_name=flow_name or self.flow, tag=self.tag)
        expect(isinstance(resp, dict), f"submit_run_yaml returned {type(resp).__name__}")
        expect(is_run_id(resp.get("run_id")), f"no uuid run_id in {resp}")
        return resp["run_id"]

    def wait_terminal(self, run_id: str, timeout: float = 20.0) -> Dict[str, Any]:
        def probe() -> Optional[Dict[str, Any]]:
            run = self.client.get_run_with_records(run_id)
            return run if run.get("status") in TERMINAL else None

        return wait_until(f"run {run_id} to finish", timeout, probe)

    def yaml_run(self) -> str:
        if self.yaml_run_id is None:
            self.yaml_run_id = self.submit_yaml(CHAIN_YAML)
        return self.yaml_run_id

    def run(self, name: str, fn: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            fn()
        except Exception as exc:  # one line per method, whatever went wrong
            reason = describe(exc)
            self.results.append((name, False, reason))
            print(f"FAIL {name}: {reason}", flush=True)
            if not isinstance(exc, (Check, httpx.HTTPStatusError)):
                traceback.print_exc()
        else:
            self.results.append((name, True, ""))
            print(f"PASS {name} ({time.monotonic() - started:.1f}s)", flush=True)

    # -- one check per client method ----------------------------------------------------

    def check_submit_run_yaml(self) -> None:
        resp = self.client.submit_run_yaml(CHAIN_YAML, flow_name=self.flow, tag=self.tag)
        expect(isinstance(resp, dict), f"expected an object, got {resp!r}")
        expect(is_run_id(resp.get("run_id")), f"no uuid run_id in {resp}")
        expect(resp.get("status") == "PENDING", f"status {resp.get('status')!r} != 'PENDING'")
        self.yaml_run_id = resp["run_id"]

    def check_get_run(self) -> None:
        run_id = self.yaml_run()
        first = self.client.get_run(run_id)
        expect(first.get("run_id") == run_id, f"run_id mismatch: {first.get('run_id')}")
        expect(first.get("flow_name") == self.flow, f"flow_name {first.get('flow_name')!r}")
        expect(first.get("status") in {"PENDING", "RUNNING", *TERMINAL}, f"status {first.get('status')!r}")
        expect("task_records" not in first, "task_records present without include=records")
        run = self.wait_terminal(run_id)
        expect(run["status"] == "COMPLETED", f"run ended {run['status']}: {run.get('error')}")
        expect(run.get("tasks") == {"a": "SUCCEEDED", "b": "SUCCEEDED"}, f"tasks {run.get('tasks')}")
        expect(run.get("params") == {"greeting": "hello"}, f"params {run.get('params')}")
        expect(run.get("tag") == self.tag and run.get("tags") == [self.tag], f"tag/tags {run.get('tag')} {run.get('tags')}")
        for key in ("start_time", "end_time", "updated_at", "heartbeat_at"):
            expect(is_num(run.get(key)), f"{key} is not a number: {run.get(key)!r}")
        expect(isinstance(run.get("workflow_yaml_sha256"), str) and len(run["workflow_yaml_sha256"]) == 64, "workflow_yaml_sha256 missing")
        expect(run.get("workflow_yaml_bytes") == len(CHAIN_YAML.encode()), f"workflow_yaml_bytes {run.get('workflow_yaml_bytes')}")
        records = run.get("task_records") or {}
        expect(records.get("b", {}).get("output") == "hello", f"task_records.b.output {records.get('b')}")
        expect(records.get("a", {}).get("state") == "SUCCEEDED", f"task_records.a {records.get('a')}")
        # A missing run is an HTTP 404 for the client.
        try:
            self.client.get_run(str(uuid.uuid4()))
        except httpx.HTTPStatusError as exc:
            expect(exc.response.status_code == 404, f"missing run gave {exc.response.status_code}")
            expect(exc.response.json().get("detail") == "run not found", f"detail {exc.response.text}")
        else:
            raise Check("get_run of a missing run did not raise")

    def check_get_tasks(self) -> None:
        run_id = self.yaml_run()
        self.wait_terminal(run_id)
        tasks = self.client.get_tasks(run_id)
        expect(set(tasks) >= {"run_id", "flow_name", "status", "tasks", "task_records", "task_records_truncated"}, f"keys {sorted(tasks)}")
        expect(tasks["run_id"] == run_id and tasks["flow_name"] == self.flow, f"ids {tasks['run_id']} {tasks['flow_name']}")
        expect(tasks["tasks"] == {"a": "SUCCEEDED", "b": "SUCCEEDED"}, f"tasks {tasks['tasks']}")
        expect(tasks["task_records"]["a"]["output"] == "hello", f"records {tasks['task_records']}")
        expect(tasks["task_records_truncated"] is False, f"truncated {tasks['task_records_truncated']!r}")

    def check_list_runs(self) -> None:
        run_id = self.yaml_run()
        self.wait_terminal(run_id)
        items = self.client.list_runs()
        expect(isinstance(items, list), f"expected a list, got {type(items).__name__}")
        mine = [i for i in items if i.get("run_id") == run_id]
        expect(len(mine) == 1, f"run {run_id} listed {len(mine)} times")
        summary = mine[0]
        expect(summary.get("status") == "COMPLETED" and summary.get("flow_name") == self.flow, f"summary {summary}")
        expect(is_num(summary.get("updated_at")), f"updated_at {summary.get('updated_at')!r}")
        expect("params" not in summary and "task_records" not in summary, f"summary too full: {sorted(summary)}")
        filtered = self.client.list_runs(flow=self.flow, status="COMPLETED", tag=self.tag, limit=200)
        expect(run_id in [i["run_id"] for i in filtered], "filtered list misses the run")
        expect(all(i.get("flow_name") == self.flow and i.get("status") == "COMPLETED" for i in filtered), "filter not applied")
        full = self.client.list_runs(flow=self.flow, full=True)
        expect(any(i.get("run_id") == run_id and "params" in i for i in full), "include=full gave no full snapshot")
        expect(self.client.list_runs(flow=f"{self.flow}-none") == [], "unknown flow did not list []")
        keys = [(i["updated_at"], i["run_id"]) for i in items]
        expect(keys == sorted(keys, reverse=True), "list not ordered by (updated_at, run_id) descending")

    def check_list_runs_vnext(self) -> None:
        flow = f"{self.flow}-pages"
        ids = [self.submit_yaml(CHAIN_YAML, flow_name=flow) for _ in range(3)]
        for run_id in ids:
            self.wait_terminal(run_id)
        time.sleep(1.5)  # let any late write land, so the pages see a stable order
        first = self.client.list_runs_vnext(flow=flow, limit=10)
        expect(isinstance(first, dict) and set(first) >= {"items", "next_cursor"}, f"vnext body {first!r}")
        expect(first["next_cursor"] is None, f"next_cursor {first['next_cursor']!r} with everything on one page")
        expect(sorted(i["run_id"] for i in first["items"]) == sorted(ids), f"items {[i['run_id'] for i in first['items']]}")
        # The client sends `cursor` only when truthy, so the first page needs `updated_after`
        # (its presence, even 0) to switch the gateway to the paged mode.
        seen: List[Dict[str, Any]] = []
        cursor: Optional[str] = None
        for _ in range(10):
            page = self.client.list_runs_vnext(flow=flow, limit=1, updated_after=0.0, cursor=cursor)
            expect(isinstance(page.get("items"), list) and len(page["items"]) <= 1, f"page {page}")
            seen.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
            expect(isinstance(cursor, str), f"next_cursor {cursor!r}")
        got = [i["run_id"] for i in seen]
        expect(sorted(got) == sorted(ids) and len(got) == len(set(got)), f"paged ids {got} != {ids}")
        keys = [(i["updated_at"], i["run_id"]) for i in seen]
        expect(keys == sorted(keys, reverse=True), "pages not ordered newest first")
        newest = seen[0]["updated_at"]
        after = self.client.list_runs_vnext(flow=flow, updated_after=newest)
        expect(after == {"items": [], "next_cursor": None}, f"updated_after newest gave {after}")
        older = self.client.list_runs_vnext(flow=flow, updated_after=seen[-1]["updated_at"])
        expect(len(older["items"]) == 2, f"updated_after oldest gave {len(older['items'])} items")
        empty = self.client.list_runs_vnext(flow=f"{flow}-none")
        expect(empty == {"items": [], "next_cursor": None}, f"empty vnext {empty}")
        try:
            self.client.list_runs_vnext(cursor="abc")
        except httpx.HTTPStatusError as exc:
            expect(exc.response.status_code == 422, f"bad cursor gave {exc.response.status_code}")
        else:
            raise Check("a bad cursor was accepted")

    def check_watch_run(self) -> None:
        run_id = self.submit_yaml(SLOW_CHAIN_YAML)
        events: List[Dict[str, Any]] = []
        stream = self.client.watch_run(run_id, timeout_sec=30)
        final: Optional[Dict[str, Any]] = None
        try:
            for event in stream:
                events.append(event)
                expect(event["event"] in {"snapshot", "heartbeat"}, f"event name {event['event']!r}")
                data = event["data"]
                expect(data.get("run_id") == run_id and is_num(data.get("ts")), f"event data {data}")
                if event["event"] == "snapshot":
                    snap = data.get("snapshot")
                    expect(isinstance(snap, dict) and snap.get("run_id") == run_id, f"snapshot {snap}")
                    expect("task_records" not in snap, "task_records in a watch without include=records")
                    if snap.get("status") in TERMINAL:
                        final = snap
                        break
                if len(events) > 200:
                    raise Check("more than 200 events without a terminal snapshot")
        finally:
            stream.close()
        expect(final is not None, f"stream ended without a terminal snapshot after {len(events)} events")
        expect(final["status"] == "COMPLETED", f"final status {final['status']}")
        expect(events[0]["event"] == "snapshot", "the first event is not the current snapshot")
        # With include=records and since=<final updated_at> the stream opens with the final state.
        stream = self.client.watch_run(run_id, include_records=True, since=final["updated_at"], timeout_sec=5)
        try:
            first = next(iter(stream))
        finally:
            stream.close()
        expect(first["event"] == "snapshot", f"first event {first['event']}")
        snap = first["data"]["snapshot"]
        expect(snap["task_records"]["done"]["output"] == "awake", f"records {snap.get('task_records')}")

    def check_cancel_run(self) -> None:
        run_id = self.submit_yaml(LONG_YAML)
        wait_until(
            "the long run to start",
            15,
            lambda: True if self.client.get_run(run_id).get("status") == "RUNNING" else None,
        )
        snap = self.client.cancel_run(run_id)
        expect(snap.get("run_id") == run_id, f"cancel returned {snap}")
        expect(snap.get("status") in {"CANCELLING", "CANCELLED"}, f"status after cancel {snap.get('status')}")
        expect(is_num(snap.get("cancel_requested_at")) and snap["cancel_requested_at"] > 0, f"cancel_requested_at {snap.get('cancel_requested_at')!r}")
        expect("task_records" not in snap, "cancel answer has task_records")
        if self.original_gateway:
            # The original gateway writes a cancel with a plain KV put (no compare-and-set):
            # a second cancel that read the run just before the worker's terminal write puts
            # CANCELLING back over CANCELLED for good. So against it, cancel again only once
            # the worker has finished the run.
            wait_until(
                "the worker to finish the cancelled run",
                20,
                lambda: True if self.client.get_run(run_id).get("status") in TERMINAL else None,
            )
        try:
            done = self.client.cancel_run(run_id, wait=True, timeout_sec=20)
        except TimeoutError as exc:
            raise Check(f"{exc}; the run is now {self.client.get_run_with_records(run_id)}") from exc
        expect(done.get("status") == "CANCELLED", f"cancel wait ended {done.get('status')}")
        expect(
            done.get("cancel_requested_at") == snap["cancel_requested_at"],
            f"cancel_requested_at changed from {snap['cancel_requested_at']!r} (cancel answer, "
            f"status {snap.get('status')}) to {done.get('cancel_requested_at')!r} (final)",
        )
        again = self.client.cancel_run(run_id)
        expect(again.get("status") == "CANCELLED", f"second cancel gave {again.get('status')}")
        tasks = self.client.get_tasks(run_id)["tasks"]
        expect(tasks.get("after") != "SUCCEEDED", f"task after the cancel ran: {tasks}")
        try:
            self.client.cancel_run(str(uuid.uuid4()))
        except httpx.HTTPStatusError as exc:
            expect(exc.response.status_code == 404, f"cancel of a missing run gave {exc.response.status_code}")
        else:
            raise Check("cancel of a missing run did not raise")

    def _find_worker(self, **query: Any) -> Optional[Dict[str, Any]]:
        workers = self.client.get_workers(**query)
        expect(isinstance(workers, list), f"get_workers returned {type(workers).__name__}")
        return next((w for w in workers if w.get("worker_id") == self.worker_id), None)

    def check_get_workers(self) -> None:
        me = wait_until(f"worker {self.worker_id} in GET /workers", 10, self._find_worker)
        expect(me.get("state") in {"IDLE", "RUNNING"}, f"state {me.get('state')}")
        expect(self.tag in (me.get("tags") or []), f"tags {me.get('tags')}")
        for key in ("last_seen_at", "last_heartbeat_at", "heartbeat_at"):
            expect(is_num(me.get(key)), f"{key} {me.get(key)!r}")
        expect(me.get("hidden") in (False, None), f"hidden {me.get('hidden')!r}")
        expect(self._find_worker(scope="all", limit=500) is not None, "scope=all misses the worker")
        expect(self._find_worker(state="IDLE") is not None or self._find_worker(state="RUNNING") is not None, "state filter misses the worker")
        expect(self._find_worker(state="STOPPED_GRACEFUL") is None, "state=STOPPED_GRACEFUL lists a live worker")
        try:
            self.client.get_workers(scope="nope")
        except httpx.HTTPStatusError as exc:
            expect(exc.response.status_code == 422, f"scope=nope gave {exc.response.status_code}")
        else:
            raise Check("scope=nope was accepted")

    def check_patch_worker_hidden(self) -> None:
        wait_until(f"worker {self.worker_id} in GET /workers", 10, self._find_worker)
        resp = self.client.patch_worker_hidden(self.worker_id, hidden=True)
        expect(resp.get("worker_id") == self.worker_id and resp.get("hidden") is True, f"patch answer {resp}")
        expect(is_num(resp.get("updated_at")), f"updated_at {resp.get('updated_at')!r}")
        expect(self._find_worker() is None, "a hidden worker is listed by default")
        shown = self._find_worker(include_hidden=True)
        expect(shown is not None and shown.get("hidden") is True, f"include_hidden=true gave {shown}")
        time.sleep(0.5)  # survives the worker's own heartbeats
        shown = self._find_worker(include_hidden=True)
        expect(shown is not None and shown.get("hidden") is True, f"hidden lost after a heartbeat: {shown}")
        resp = self.client.patch_worker_hidden(self.worker_id, hidden=False)
        expect(resp.get("hidden") is False, f"unhide answer {resp}")
        expect(self._find_worker() is not None, "an unhidden worker is not listed")
        try:
            self.client.patch_worker_hidden(f"no-such-{uuid.uuid4().hex[:6]}", hidden=True)
        except httpx.HTTPStatusError as exc:
            expect(exc.response.status_code == 404, f"unknown worker gave {exc.response.status_code}")
        else:
            raise Check("PATCH of an unknown worker did not raise")

    def check_submit_run(self) -> None:
        resp = self.client.submit_run("hello", {"name": "interop"}, tag=self.tag)
        expect(isinstance(resp, dict) and is_run_id(resp.get("run_id")), f"submit_run returned {resp!r}")
        expect(resp.get("status") == "PENDING", f"status {resp.get('status')!r}")
        run = self.wait_terminal(resp["run_id"])
        expect(run["status"] == "COMPLETED", f"run ended {run['status']}: {run.get('error')}")
        expect(run.get("flow_name") == "hello" and run.get("params") == {"name": "interop"}, f"run {run.get('flow_name')} {run.get('params')}")
        expect(run["task_records"]["done"]["output"] == "interop", f"records {run['task_records']}")
        expect("workflow_yaml_sha256" not in run or run["workflow_yaml_sha256"] is None, "a named run has a yaml sha")

    def check_get_metrics(self) -> None:
        self.wait_terminal(self.yaml_run())
        text = self.client.get_metrics()
        expect(isinstance(text, str) and text.endswith("\n"), "metrics is not newline-terminated text")
        for needle in (
            "# TYPE pyoco_runs_total gauge",
            'pyoco_runs_total{status="COMPLETED"}',
            "# TYPE pyoco_runs_today_total gauge",
            "# TYPE pyoco_workers_alive_total gauge",
            "# TYPE pyoco_dlq_messages_total gauge",
        ):
            expect(needle in text, f"metrics lack {needle!r}")
        alive = [ln for ln in text.splitlines() if ln.startswith("pyoco_workers_alive_total ")]
        expect(len(alive) == 1 and float(alive[0].split()[1]) >= 1, f"workers alive line {alive}")


def describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        req, resp = exc.request, exc.response
        try:
            body = resp.text[:300]
        except httpx.ResponseNotRead:  # a streamed answer (watch) whose body was not read
            body = "<streamed body not read>"
        query = req.url.query.decode()
        return f"HTTP {resp.status_code} {req.method} {req.url.path}{'?' + query if query else ''}: {body}"
    return f"{type(exc).__name__}: {exc}"


# cancel_run goes last: its run would occupy the worker for a minute if the cancel failed.
CHECKS = [
    "submit_run_yaml",
    "get_run",
    "get_tasks",
    "list_runs",
    "list_runs_vnext",
    "submit_run",
    "watch_run",
    "get_workers",
    "patch_worker_hidden",
    "get_metrics",
    "cancel_run",
]


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("--worker-id", default="interop-worker")
    parser.add_argument("--tag", default="default")
    parser.add_argument(
        "--original-gateway",
        action="store_true",
        help="the gateway is the Python original: avoid its known cancel race (see check_cancel_run)",
    )
    parser.add_argument("--api-key", default=None, help="send this API key (auth mode api_key)")
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ",".join(CHECKS))
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(only) - set(CHECKS)
    if unknown:
        parser.error(f"unknown checks: {sorted(unknown)}")
    suite = Suite(args.base_url, args.worker_id, args.tag, args.original_gateway, args.api_key)
    for name in CHECKS:
        if not only or name in only:
            suite.run(name, getattr(suite, f"check_{name}"))
    failed = [name for name, ok, _ in suite.results if not ok]
    print(f"result: {len(suite.results) - len(failed)} of {len(suite.results)} checks passed", flush=True)
    if failed:
        print("failed: " + ", ".join(failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
