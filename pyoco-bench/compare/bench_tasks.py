"""The side-by-side workload's two tasks (pyoco-bench --compare), the original quickstart's
shape: `add_one` takes `x` from the run's params, `to_text` the output of `add_one`.
pyoco's Python runner and the original pyoco-server worker import this module by name
(`bench_tasks:add_one`); `bench_celery.py` registers the same functions with Celery."""


def add_one(x=0):
    return int(x) + 1


def to_text(add_one):
    return f"v={int(add_one)}"
