# sietch code-context driver for python3: one long-lived interpreter that
# runs code sent by the guest agent and keeps its state between runs.
# Standard library only. The agent writes one JSON request per line on
# fd 3 and reads one JSON event per line from fd 4:
#   request {"code": "..."}
#   events  {"stdout": "..."} {"stderr": "..."}
#           {"result": {"text/plain": "...", "image/png": "<base64>", ...}}
#           {"error": {"name": "...", "value": "...", "traceback": "..."}}
#           {"end": {"status": "ok" | "error", "execution_count": N}}
#           {"begin": {}} first: the agent sends SIGINT only after it
# Before each end event it writes the marker the agent gave it (in
# $SIETCH_CONTEXT_MARKER) to
# fds 1 and 2, so that the agent knows when output the code's subprocesses
# wrote there is all in. SIGINT interrupts the code running
# (KeyboardInterrupt); the driver lives on.
import ast, base64, io, json, os, signal, sys, traceback

_marker = os.environ.pop("SIETCH_CONTEXT_MARKER", "").encode()
_req = os.fdopen(3, "r", encoding="utf-8", errors="replace")
_ev = os.fdopen(4, "w", encoding="utf-8", buffering=1)


def _emit(event):
    _ev.write(json.dumps(event, separators=(",", ":")) + "\n")
    _ev.flush()


# Events after the code ran (results, an error) go out with the end event
# in one write: every system call is dear in a guest whose kernel is
# emulated.
_tail = []


def _defer(event):
    _tail.append(json.dumps(event, separators=(",", ":")) + "\n")


class _Stream(io.TextIOBase):
    """sys.stdout and sys.stderr: whole lines become events, in order (a
    partial line waits for its newline, a flush, or the end of the run)."""

    def __init__(self, name):
        self._name = name
        self._buf = ""

    def writable(self):
        return True

    def write(self, s):
        self._buf += s
        i = self._buf.rfind("\n")
        if i >= 0 or len(self._buf) > 8192:
            cut = i + 1 if i >= 0 else len(self._buf)
            out, self._buf = self._buf[:cut], self._buf[cut:]
            _flush_other(self)
            _emit({self._name: out})
        return len(s)

    def flush(self):
        if self._buf:
            out, self._buf = self._buf, ""
            _emit({self._name: out})

    def isatty(self):
        return False

    @property
    def encoding(self):
        return "utf-8"


def _flush_other(stream):
    """Keep stdout and stderr in the order they were written."""
    for s in (sys.stdout, sys.stderr):
        if s is not stream and isinstance(s, _Stream):
            s.flush()


def _flush_all():
    for s in (sys.stdout, sys.stderr):
        if isinstance(s, _Stream):
            s.flush()


sys.stdout = _Stream("stdout")
sys.stderr = _Stream("stderr")
sys.stdin = io.StringIO("")

_MIMES = [
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_json_", "application/json"),
    ("_repr_latex_", "text/latex"),
]


def _bundle(value):
    data = {"text/plain": repr(value)}
    for method, mime in _MIMES:
        fn = getattr(value, method, None)
        if fn is None or not callable(fn):
            continue
        try:
            out = fn()
        except Exception:
            continue
        if out is None:
            continue
        if isinstance(out, tuple):  # (data, metadata)
            out = out[0]
        if isinstance(out, (bytes, bytearray)):
            out = base64.b64encode(bytes(out)).decode("ascii")
        elif mime == "application/json":
            out = json.dumps(out)
        data[mime] = out
    return data


def _figures():
    """Open matplotlib figures become PNG results, then close."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        buf = io.BytesIO()
        try:
            plt.figure(num).savefig(buf, format="png")
        except Exception:
            continue
        _defer({"result": {"text/plain": "<Figure %d>" % num,
                          "image/png": base64.b64encode(buf.getvalue()).decode("ascii")}})
    plt.close("all")


# SIGINT raises KeyboardInterrupt only while a cell runs: one that lands
# in the driver's own code (reading a request, writing an event) must not
# lose either. A system call it interrupts there is retried (PEP 475).
_in_cell = False


def _on_sigint(signum, frame):
    if _in_cell:
        raise KeyboardInterrupt


signal.signal(signal.SIGINT, _on_sigint)

_globals = {"__name__": "__main__", "__builtins__": __builtins__}
_count = 0


def _run(code):
    global _count
    _count += 1
    global _in_cell
    status = "ok"
    try:
        _in_cell = True
        _emit({"begin": {}})  # the agent sends SIGINT only after this
        try:
            tree = ast.parse(code, "<cell>", "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, "<cell>", "exec"), _globals)
            value = None
            if last is not None:
                value = eval(compile(last, "<cell>", "eval"), _globals)
        finally:
            _in_cell = False
        if value is not None:
            _globals["_"] = value
            _flush_all()
            _defer({"result": _bundle(value)})
        _flush_all()
        _figures()
    except BaseException as e:  # KeyboardInterrupt and SystemExit too
        _flush_all()
        status = "error"
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        # Drop the driver's own frames: the traceback starts in the cell.
        tb = [l for l in tb if 'File "<cell>"' in l or not l.startswith("  File ")]
        _defer({"error": {"name": type(e).__name__, "value": str(e), "traceback": "".join(tb)}})
    _end(status)


def _end(status):
    _flush_all()
    for fd in (1, 2):
        try:
            os.write(fd, _marker)
        except OSError:
            pass
    _defer({"end": {"status": status, "execution_count": _count}})
    _ev.write("".join(_tail))
    _ev.flush()
    _tail.clear()


_emit({"ready": {"pid": os.getpid(), "version": sys.version.split()[0]}})
while True:
    line = _req.readline()
    if not line:
        break
    try:
        req = json.loads(line)
    except ValueError:
        _emit({"error": {"name": "ProtocolError", "value": "request is not JSON", "traceback": ""}})
        _end("error")
        continue
    _run(req.get("code", ""))
