"""Shared measuring helpers for the benchmark scripts: run a step in a child process, time it, and
sample the peak resident memory of its whole process tree (the child and everything it starts).

Every measured step runs in its own process so that its memory is its own and nothing warmed up
by an earlier step (imports, caches, allocator pools) flatters a later one. A step can be capped
in time and memory: the tree is then killed and the measurement says so (`stopped`), rather than
the machine running out of memory.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

SAMPLE_SECONDS = 0.05  # how often the process tree's memory is sampled
GIB = 1024**3


@dataclass(frozen=True)
class Measurement:
    """One measured child process."""

    wall_s: float
    cpu_s: float  # user + system CPU seconds of the process tree (all threads)
    peak_rss: int  # bytes, peak of the summed RSS of the process tree (sampled)
    returncode: int
    stdout: str
    stderr: str
    stopped: str | None = None  # "time cap" / "memory cap" when the caps ended the process
    result: dict | None = None  # what a Python step reported (see `run_python_step`)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.stopped is None

    def describe_failure(self) -> str:
        if self.stopped:
            return f"stopped by the {self.stopped} after {self.wall_s:.0f} s"
        tail = (self.stderr or self.stdout).strip().splitlines()[-5:]
        return f"exit code {self.returncode}: " + " | ".join(tail)


def tree_rss(proc: psutil.Process) -> int:
    """Summed resident memory of a process and all its descendants (0 once it is gone)."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue  # exited between listing and sampling
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _kill_tree(proc: psutil.Process) -> None:
    try:
        procs = [*proc.children(recursive=True), proc]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue


def run_measured(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    time_cap_s: float | None = None,
    memory_cap: int | None = None,
) -> Measurement:
    """Run `cmd`, returning its wall time and the peak RSS of its process tree.

    Output is captured to temporary files (pipes could fill up and stall a long run). CPU time
    is this process's children's usage before and after, so run one step at a time.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        cpu_before = _children_cpu()
        started = time.perf_counter()
        popen = subprocess.Popen(
            list(cmd), stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
        )
        proc = psutil.Process(popen.pid)
        peak, stopped = 0, None
        while popen.poll() is None:
            peak = max(peak, tree_rss(proc))
            elapsed = time.perf_counter() - started
            if time_cap_s is not None and elapsed > time_cap_s:
                stopped = "time cap"
            elif memory_cap is not None and peak > memory_cap:
                stopped = "memory cap"
            if stopped:
                _kill_tree(proc)
                popen.wait()
                break
            time.sleep(SAMPLE_SECONDS)
        wall = time.perf_counter() - started
        cpu = _children_cpu() - cpu_before
        out.seek(0)
        err.seek(0)
        return Measurement(
            wall_s=wall,
            cpu_s=cpu,
            peak_rss=peak,
            returncode=popen.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            stopped=stopped,
        )


def run_python_step(
    script: str | Path,
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    time_cap_s: float | None = None,
    memory_cap: int | None = None,
) -> Measurement:
    """Run `python script *args --result FILE` measured; the JSON the step wrote to FILE is
    returned as `Measurement.result` (None when it wrote nothing)."""
    fd, result_path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        m = run_measured(
            [sys.executable, str(script), *args, "--result", result_path],
            env=env,
            cwd=cwd,
            time_cap_s=time_cap_s,
            memory_cap=memory_cap,
        )
        text = Path(result_path).read_text()
        result = json.loads(text) if text.strip() else None
    finally:
        Path(result_path).unlink(missing_ok=True)
    return Measurement(**{**m.__dict__, "result": result})


def write_result(path: str | Path, result: dict) -> None:
    """What a child step calls last: hand its numbers to the parent."""
    Path(path).write_text(json.dumps(result, default=str))


class PeakSampler:
    """Peak RSS of this process's tree while a `with` block runs (for in-process sub-steps)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            rss = tree_rss(me)
            self.peak = max(self.peak, rss)
            self.sample(rss)
            self._stop.wait(SAMPLE_SECONDS)

    def sample(self, rss: int) -> None:
        """Called with every sample; subclasses record more (see bench_features.StageSampler)."""

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def machine() -> dict[str, object]:
    """What the numbers were measured on: cores, memory, CPU model, load at the start."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    vm = psutil.virtual_memory()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_total": vm.total,
        "memory_available": vm.available,
        "load_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    return f"{n / 1024**2:.0f} MiB"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


def write_doc_section(doc: Path, section: str, text: str, info: dict) -> None:
    """Replace one "## ..." section of docs/performance.md, keeping every other section."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    if doc.is_file():
        old = doc.read_text()
    else:
        old = (
            "# Performance\n\n"
            f"Benchmarks of notalone, measured on a {info['cores']}-core machine "
            f"({info['cpu']}, {fmt_bytes(info['memory_total'])} RAM) by the `make bench-*` "
            "targets; each section is written by its own script.\n\n"
        )
    pattern = re.compile(rf"^{re.escape(section)}\s*\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _m: text + "\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    doc.write_text(new.rstrip("\n") + "\n")


def code_version(repo: Path, *paths: str) -> str:
    """What was measured: the commit, and whether `paths` (every file when none) had local
    changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", *paths], cwd=repo
        ).returncode
    except OSError:
        return "unknown"
    return f"{commit}{' + uncommitted changes' if changed else ''}"


def notalone_exe() -> str:
    """The `notalone` of this environment (else the one on PATH)."""
    exe = Path(sys.executable).parent / "notalone"
    return str(exe) if exe.exists() else "notalone"
