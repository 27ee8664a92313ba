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
