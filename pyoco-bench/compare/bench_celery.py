"""Celery's side of pyoco-bench --compare: the same two functions as Celery tasks, chained,
on a Redis broker and result backend (`PYOCO_BENCH_REDIS_URL`).

Started twice by the bench:
  celery -A bench_celery worker ...              the worker (Celery's defaults otherwise)
  python bench_celery.py drive RUNS CONCURRENCY  the driver: submits RUNS chains, CONCURRENCY
                                                 in flight, and prints one JSON line of results
"""

import json
import os
import sys
import threading
import time

from celery import Celery, chain

import bench_tasks

REDIS = os.environ.get("PYOCO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench_celery", broker=REDIS, backend=REDIS)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)

add_one = app.task(name="bench.add_one")(bench_tasks.add_one)
to_text = app.task(name="bench.to_text")(bench_tasks.to_text)


def one_run():
    """Submits one chain and waits for its result: (latency in seconds, ok)."""
    sent = time.perf_counter()
    result = chain(add_one.s(41), to_text.s()).apply_async()
    value = result.get(timeout=120)
    took = time.perf_counter() - sent
    result.forget()
    return took, value == "v=42"


def drive(runs, concurrency):
    # The worker is up once one chain has gone through.
    deadline = time.monotonic() + 60
    while True:
        try:
            one_run()
            break
        except Exception:  # noqa: BLE001 - any failure before the deadline means "not yet"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    lock = threading.Lock()
    latencies, failed = [], [0]
    next_index = [0]

    def client():
        while True:
            with lock:
                if next_index[0] >= runs:
                    return
                next_index[0] += 1
            took, ok = one_run()
            with lock:
                latencies.append(took)
                if not ok:
                    failed[0] += 1

    cpu_before = time.process_time()
    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "runs": len(latencies),
                "failed": failed[0],
                "seconds": seconds,
                "latencies_ms": [x * 1000.0 for x in latencies],
                "driver_cpu_s": time.process_time() - cpu_before,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "drive":
        sys.exit("usage: bench_celery.py drive RUNS CONCURRENCY")
    drive(int(sys.argv[2]), int(sys.argv[3]))
