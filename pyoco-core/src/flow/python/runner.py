"""pyoco's Python task runner: one process runs one task at a time for a Rust worker.

Protocol: one JSON object per line on stdin, one JSON answer per line on the original
stdout (file descriptor 1 is moved aside at start, so a task printing to fd 1 cannot corrupt
the protocol; its output is captured and returned instead).

Request:  {"id", "callable": "module:function", "inputs": {...}, "params": {...},
           "results": {...}, "ctx": {"run_id", "flow_name", "task", "loop", "loops"}}
Answer:   {"id", "ok": true, "output", "inputs", "stdout", "stderr"}
       or {"id", "ok": false, "error", "traceback", "inputs", "stdout", "stderr"}

Arguments are wired like pyoco: explicit inputs, then params by parameter name, then the
result of the upstream task of that name; a parameter named `ctx` gets a small context.
"""
import contextlib
import importlib
import inspect
import io
import json
import math
import os
import sys
import traceback

CAPTURE_LIMIT = 64 * 1024


class _Capture(io.StringIO):
    """A text buffer that keeps at most CAPTURE_LIMIT characters."""

    def write(self, s):
        room = CAPTURE_LIMIT - self.tell()
        if room > 0:
            super().write(s[:room])
        return len(s)


class Context:
    """What a task asking for `ctx` receives."""

    def __init__(self, ctx, params, results):
        self.run_id = ctx.get("run_id")
        self.flow_name = ctx.get("flow_name")
        self.task = ctx.get("task")
        self.params = params
        self.results = results
        self.is_cancelled = False
        # Inside repeat/foreach/until: the innermost loop frame (a dict with type, index,
        # iteration, count, item, alias) and every frame, outermost first.
        self.loop = ctx.get("loop")
        self.loops = ctx.get("loops") or []

    def get_var(self, name, default=None):
        """The item of the innermost foreach whose alias is `name`."""
        for frame in reversed(self.loops):
            if frame.get("alias") == name:
                return frame.get("item")
        return default


_PLAIN = (str, int, bool, type(None))


def _safe(value):
    """JSON-safe like the original: the value if json.dumps accepts it, else its repr()."""
    if type(value) in _PLAIN:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else None
    try:
        json.dumps(value, allow_nan=True)
        return _finite(value)
    except (TypeError, ValueError):
        return repr(value)


def _finite(value):
    # JSON has no NaN/Infinity; the original writes Python's tokens, readers see null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# Resolved callables and how to wire their arguments, by reference: resolving and
# inspect.signature() cost more than a short task. A runner never outlives the code it
# imported (the worker starts new runners when packages change), so nothing goes stale.
_RESOLVED = {}


def _resolved(callable_ref):
    hit = _RESOLVED.get(callable_ref)
    if hit is None:
        func = _resolve(callable_ref)
        hit = _RESOLVED[callable_ref] = (func, _plan(func))
    return hit


def _resolve(callable_ref):
    module_name, _, attr = callable_ref.rpartition(":")
    if not module_name:
        raise ValueError(f"callable must be module:function, got {callable_ref!r}")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    # pyoco's TaskWrapper / Task keep the function in `.func`.
    for _ in range(3):
        inner = getattr(obj, "func", None)
        if callable(inner):
            obj = inner
        else:
            break
    if not callable(obj):
        raise TypeError(f"{callable_ref} is not callable")
    return obj


def _plan(func):
    """The parameter names to fill from params or results, and whether `ctx` is wanted
    (None when the signature cannot be read: only explicit inputs are passed)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    names, wants_ctx = [], False
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name == "ctx":
            wants_ctx = True
            continue
        names.append(name)
    return names, wants_ctx


def _wire(plan, inputs, params, results, ctx):
    kwargs = dict(inputs)
    if plan is None:
        return kwargs
    names, wants_ctx = plan
    for name in names:
        if name in kwargs:
            continue
        if name in params:
            kwargs[name] = params[name]
        elif name in results:
            kwargs[name] = results[name]
    if wants_ctx:
        kwargs["ctx"] = Context(ctx, params, results)
    return kwargs


def handle(request):
    out, err = _Capture(), _Capture()
    answer = {"id": request.get("id")}
    passed = {}
    try:
        func, plan = _resolved(request["callable"])
        kwargs = _wire(plan, request.get("inputs") or {}, request.get("params") or {},
                       request.get("results") or {}, request.get("ctx") or {})
        passed = {k: _safe(v) for k, v in kwargs.items() if k != "ctx"}
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = func(**kwargs)
        answer.update(ok=True, output=_safe(result))
    except (Exception, SystemExit) as exc:  # every failure, sys.exit() included, is the task's error
        answer.update(ok=False, error=str(exc) or type(exc).__name__, traceback=traceback.format_exc())
    answer.update(inputs=passed, stdout=out.getvalue(), stderr=err.getvalue())
    return answer


def _limit_memory():
    """PYOCO_RUNNER_MEMORY_MB (the worker's PYOCO_PYTHON_MEMORY_MB): cap this process's
    address space, so a task that allocates past it fails with MemoryError instead of
    taking the machine's memory."""
    mb = os.environ.get("PYOCO_RUNNER_MEMORY_MB")
    if not mb:
        return
    import resource
    limit = int(mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main():
    _limit_memory()
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, os.getcwd())
    proto.write(json.dumps({"ready": True, "python": sys.version.split()[0]}) + "\n")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
        except ValueError as exc:
            proto.write(json.dumps({"id": None, "ok": False, "error": f"bad request: {exc}"}) + "\n")
            continue
        proto.write(json.dumps(handle(request), default=repr) + "\n")


if __name__ == "__main__":
    main()
