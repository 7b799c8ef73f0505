"""Runs one `pyoco:python` script (started as `python3 -I -S -c <this>` by script.rs).

stdin: one JSON document {"script", "params", "input", "memory_mb", "marker", "limits"?}
("limits": {"cpu_sec", "processes", "file_bytes"} when sandboxed).
stdout: whatever the script prints, then a line "<marker> <answer>" where answer is
{"ok": true, "output"} or {"ok": false, "error", "traceback"}. The marker is random per run
so a script cannot forge the answer line.
"""
import json
import linecache
import math
import resource
import sys
import traceback


def _limit_memory(memory_mb):
    # RLIMIT_AS bounds the address space: an allocation beyond it raises MemoryError.
    limit = int(memory_mb) * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _limit_resources(limits):
    # Set by the sandbox (script.rs), before any script code runs; hard limits cannot be
    # raised again by the script.
    if not limits:
        return
    cpu = int(limits["cpu_sec"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    processes = int(limits["processes"])
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    size = int(limits["file_bytes"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run(request):
    try:
        source = request["script"]
        # Registered so that tracebacks show the script's lines, not just their numbers.
        linecache.cache["<script>"] = (len(source), None, source.splitlines(True), "<script>")
        namespace = {"__name__": "__pyoco_script__"}
        exec(compile(source, "<script>", "exec"), namespace)
        main = namespace.get("main")
        if not callable(main):
            raise TypeError("the script must define main(params, input_payload)")
        return {"ok": True, "output": main(request["params"], request["input"])}
    except (Exception, SystemExit) as exc:  # sys.exit() in a script is its failure too
        message = str(exc) or type(exc).__name__
        if isinstance(exc, MemoryError):
            message = "MemoryError: the script exceeded memory_mb=%s" % request["memory_mb"]
        # Skip this runner's own frame: the traceback starts in the script.
        tb = exc.__traceback__.tb_next or exc.__traceback__
        lines = traceback.format_exception(type(exc), exc, tb)
        return {"ok": False, "error": message, "traceback": "".join(lines)}


def _finite(value):
    # JSON has no NaN/Infinity: they become null, as for Python callables (runner.py).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _encode(answer):
    try:
        return json.dumps(_finite(answer), default=repr, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return json.dumps({"ok": False, "error": "main() returned a value that is not JSON: %s" % exc})


def _main():
    request = json.loads(sys.stdin.buffer.read())
    _limit_memory(request["memory_mb"])
    _limit_resources(request.get("limits"))
    answer = _encode(_run(request))
    sys.stdout.flush()
    out = sys.__stdout__
    # The leading newline ends any partial line the script printed.
    out.write("\n" + request["marker"] + " " + answer + "\n")
    out.flush()


_main()
