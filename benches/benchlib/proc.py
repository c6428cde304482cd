"""Processes: run commands as the `postgres` OS user when we are root, pick free ports,
and read a process's CPU time and resident memory from /proc."""

import os
import random
import socket
import subprocess

CLK_TCK = os.sysconf("SC_CLK_TCK")


def as_postgres_kwargs():
    """Popen keyword arguments that run a child as `postgres` when we are root
    (PostgreSQL and PgBouncer refuse to run as root); nothing otherwise."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def run(cmd, timeout, as_pg=False, env=None, check=True, cwd=None):
    """Run a command to completion with a hard timeout; return CompletedProcess (text)."""
    kwargs = as_postgres_kwargs() if as_pg else {}
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(taken=()):
    """A free TCP port on 127.0.0.1 below the ephemeral range, so that the many client
    connections of a run can never take it."""
    for _ in range(500):
        port = random.randint(20000, 30000)
        if port not in taken and port_is_free(port):
            return port
    raise RuntimeError("no free port found in 20000-30000")


def cpu_seconds(pid):
    """(utime, stime) of a process, in seconds (fields 14 and 15 of /proc/PID/stat):
    the CPU it spent in its own code and in the kernel on its behalf."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return utime / CLK_TCK, stime / CLK_TCK


def rss_kib(pid):
    """VmRSS of a process in KiB (/proc/PID/status reports it in kB = KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def nofile_limit(pid):
    """The soft 'Max open files' of a process, from /proc/PID/limits."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def system_busy_seconds():
    """CPU time all CPUs spent running processes since boot, plus time the hypervisor
    stole (first line of /proc/stat). Interrupt and softirq time is left out: most of
    it is the loopback traffic of the benchmark itself, which no process is charged
    with."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields
    return (user + nice + system + steal) / CLK_TCK


def tree_cpu_seconds(roots):
    """CPU time of the given processes and all their descendants, including the
    descendants that have already exited and been waited for (cutime/cstime)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        procs[int(entry)] = (int(fields[1]), ticks)
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, stack, seen = 0, list(roots), set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in procs:
            continue
        seen.add(pid)
        total += procs[pid][1]
        stack.extend(children.get(pid, ()))
    return total / CLK_TCK


class ForeignLoad:
    """How much CPU processes outside the benchmark used during a span: all CPU time
    of the machine minus that of the benchmark's own process trees, per second of wall
    time (in cores). The benchmark shares the machine; this says how much."""

    def __init__(self, roots):
        self.roots = roots
        self.start = self._snap()

    def _snap(self):
        import time
        return time.monotonic(), system_busy_seconds(), tree_cpu_seconds(self.roots)

    def cores(self):
        wall0, busy0, ours0 = self.start
        wall1, busy1, ours1 = self._snap()
        if wall1 <= wall0:
            return None
        return max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (wall1 - wall0)


def wait_for_quiet(roots, budget, threshold=0.15, window=0.5):
    """Wait until processes outside the benchmark use less than `threshold` cores over
    `window` seconds, for at most `budget` seconds. Returns the seconds waited."""
    import time
    started = time.monotonic()
    while time.monotonic() - started < budget:
        load = ForeignLoad(roots)
        time.sleep(window)
        cores = load.cores()
        if cores is not None and cores < threshold:
            break
    return time.monotonic() - started
