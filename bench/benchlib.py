"""Helpers the Python benchmarks share (bench/routes.py, bench/balance.py)."""
import os
import shutil
import signal
import socket
import subprocess
import time

TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=15.0, who="bench"):
    """Returns once 127.0.0.1:port accepts; exits with a message after timeout seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("%s: port %d never opened" % (who, port))


def cpu_of(pid):
    """utime + stime of process pid (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Procs:
    """The processes a benchmark starts, each pinned to a CPU, logging into work/NAME.log;
    stop() ends them all (SIGTERM, then SIGKILL after 5 s) and removes work unless
    BENCH_KEEP=1."""

    def __init__(self, work):
        self.work, self.procs = work, []

    def start(self, name, cpu, cmd):
        log = open(os.path.join(self.work, name + ".log"), "wb")
        p = subprocess.Popen(["taskset", "-c", cpu] + cmd, stdout=log, stderr=log,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(self.work, ignore_errors=True)


class CpuCap:
    """A CPU-bandwidth cgroup (v1 cpu.cfs_quota_us or v2 cpu.max) holding the processes put
    in it to pct % of one CPU per 20 ms period, as bench/lib.sh's cap_* do for bench/run.sh.
    ok is False when neither hierarchy is writable (the capped cases are then skipped)."""

    def __init__(self, label, pct):
        self.root = self.path = None
        if os.access("/sys/fs/cgroup/cpu/cgroup.procs", os.W_OK) and \
                os.path.exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
            self.v, self.root = 1, "/sys/fs/cgroup/cpu"
        elif os.path.exists("/sys/fs/cgroup/cgroup.subtree_control"):
            self.v, self.root = 2, "/sys/fs/cgroup"
        if not self.root:
            return
        try:
            if self.v == 2:
                with open(os.path.join(self.root, "cgroup.subtree_control"), "w") as f:
                    f.write("+cpu")
            self.path = os.path.join(self.root, "%s.%d" % (label, os.getpid()))
            os.makedirs(self.path, exist_ok=True)
            if self.v == 1:
                self._write("cpu.cfs_period_us", "20000")
                self._write("cpu.cfs_quota_us", str(20000 * pct // 100))
            else:
                self._write("cpu.max", "%d 20000" % (20000 * pct // 100))
        except OSError:
            self.path = None

    @property
    def ok(self):
        return self.path is not None

    def _write(self, name, value, where=None):
        with open(os.path.join(where or self.path, name), "w") as f:
            f.write(value)

    def on(self, pid):
        self._write("cgroup.procs", str(pid))

    def off(self, pid):
        try:
            self._write("cgroup.procs", str(pid), self.root)
        except OSError:
            pass

    def remove(self):
        if self.path:
            try:
                with open(os.path.join(self.path, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        self.off(int(pid))
                os.rmdir(self.path)
            except OSError:
                pass
