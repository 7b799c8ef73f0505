"""Plain Python task functions for the interop tests: a Python `pyoco-worker` imports them
as `interop_tasks:<name>` from a flow submitted through pyoco's gateway.

The engine binds parameters by name: `x` from the run's params, `add_one` from the output
of the task called `add_one`.
"""


def add_one(x=0):
    return int(x) + 1


def to_text(add_one):
    return f"v={int(add_one)}"


def precise_float():
    """A float whose shortest repr a non-round-tripping JSON reader gets wrong by one ulp
    (it reads back as 1795318326.6458695); a wire-compatible reader must keep it as is."""
    return 1795318326.6458697
