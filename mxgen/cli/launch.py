"""Launch a distributed run: MXNet's parameter-server roles as processes.

``mxgen launch -n 2 -- mxgen train-text --kvstore dist_sync ...`` starts a
scheduler, ``-s`` servers (default: as many as workers) and ``-n`` workers
on 127.0.0.1 with the ``DMLC_*`` environment MXNet's distributed kvstore
reads, prefixes every output line with its role and index, and stops
everything (the whole process group of each) as soon as any process fails
or is lost, naming it, or on Ctrl-C.  Every process sends a heartbeat on
its output; one silent for ``--timeout`` seconds (a hung or unreachable
process) is lost.  ``--launcher ssh --hosts FILE`` starts the same roles on
the listed hosts over ssh (workers and servers round-robin, the scheduler
on the first host); a remote process ends when its ssh connection does.
``--print-commands`` shows the command lines without running them.

Trusted networks only: MXNet's parameter server has no authentication and
unpickles the command messages it receives, so anyone who can reach its
ports can run code in these processes.  The local launcher keeps every
role on 127.0.0.1; with ``--hosts``, run it only on a private network you
trust (or inside a VPN).  ssh checks host keys as configured for the user.
"""
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Optional

from .._env import child_env, python_command
from ..fields import field
from .common import add_config_args, config_from_args

__all__ = ["get_parser", "main", "plan", "Launch", "RANK_MARKER", "ALIVE_MARKER", "heartbeat",
           "ssh_command"]

# A worker prints this line (then its rank) once its kvstore knows it; the
# launcher relabels that worker's output with it and drops the line.
RANK_MARKER = "mxgen-launch-rank:"
# Every process writes this every HEARTBEAT_ENV seconds (see heartbeat());
# the launcher strips it wherever it appears in a line.
ALIVE_MARKER = "\x1emxgen-alive\x1e"
HEARTBEAT_ENV = "MXGEN_HEARTBEAT_S"

# What the scheduler and the servers run: a heartbeat thread, then ``import
# mxnet``, which serves (the DMLC environment names the role) and returns
# when the workers are done.  Run with -P: nothing from the working folder
# is importable.
_SERVE = """import os, threading, time
def beat(interval=float(os.environ.get("%s", "0"))):
    while interval > 0:
        os.write(1, %r.encode() + b"\\n")
        time.sleep(interval)
threading.Thread(target=beat, daemon=True).start()
import mxnet
""" % (HEARTBEAT_ENV, ALIVE_MARKER)

# A remote process lives inside this wrapper: it runs the command in its
# own process group and ends that group when its standard input closes,
# which is what sshd does when the ssh connection drops (the launcher or
# its ssh client killed, the network gone).
_REMOTE = """import os, signal, subprocess, sys, threading, time
child = subprocess.Popen(sys.argv[1:], start_new_session=True)
def watch():
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        time.sleep(3)
threading.Thread(target=watch, daemon=True).start()
code = child.wait()
sys.exit(128 - code if code < 0 else code)
"""


def _one_line(script):
    """A script as one ``exec`` line, so command lines print on one line."""
    return "exec(%r)" % script


def heartbeat():
    """In a process started by ``mxgen launch``: write the alive marker to
    standard output every ``MXGEN_HEARTBEAT_S`` seconds from a daemon
    thread (a process stopped or hung at the operating-system level, or cut
    off, then falls silent, and the launcher ends the run)."""
    try:
        interval = float(os.environ.get(HEARTBEAT_ENV, "0"))
    except ValueError:
        return
    if interval <= 0 or any(t.name == "mxgen-heartbeat" for t in threading.enumerate()):
        return

    def beat():
        while True:
            try:
                os.write(1, (ALIVE_MARKER + "\n").encode())
            except OSError:
                return
            time.sleep(interval)
    threading.Thread(target=beat, daemon=True, name="mxgen-heartbeat").start()


@dataclass
class LaunchConfig:
    """``mxgen launch``'s settings."""
    num_workers: Optional[int] = field(None, "worker processes", group="launch",
                                       flags=("-n", "--num-workers"), required=True)
    num_servers: Optional[int] = field(None, "server processes (default: as many as workers)",
                                       group="launch", flags=("-s", "--num-servers"))
    launcher: str = field("local", "local: all processes here on 127.0.0.1; ssh: on the hosts"
                                   " of --hosts", group="launch", choices=("local", "ssh"))
    hosts: Optional[str] = field(None, "file with one host per line (ssh launcher)",
                                 group="launch")
    port: Optional[int] = field(None, "scheduler port, 1-65535 (default: a free one)",
                                group="launch")
    timeout: float = field(60.0, "seconds a process may go without a heartbeat before it"
                                 " counts as lost and the run is stopped", group="launch")
    print_commands: bool = field(False, "print the command line of every process and exit",
                                 group="launch")
    command: Optional[list] = field(None, "the worker command, after --", positional=True)


CONFIG = LaunchConfig


def get_parser(parser):
    return add_config_args(parser, CONFIG)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_port(host, port):
    from ..errors import MXGenError
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            raise MXGenError("port %d on %s is in use (%s); pick another --port"
                             % (port, host, err.strerror)) from None


def _read_hosts(path):
    from ..errors import MXGenError
    try:
        with open(path, encoding="utf-8") as f:
            hosts = [line.split("#")[0].strip() for line in f]
    except FileNotFoundError:
        raise MXGenError("hosts file not found: %s" % path) from None
    except OSError as err:
        raise MXGenError("cannot read hosts file %s: %s" % (path, err)) from None
    hosts = [h for h in hosts if h]
    if not hosts:
        raise MXGenError("hosts file %s lists no host" % path)
    for line, host in enumerate(hosts, 1):
        if host.startswith("-") or any(c.isspace() for c in host) or any(
                c in host for c in "'\";|&$`<>\\"):
            raise MXGenError("hosts file %s: %r is not a host name" % (path, host))
    return hosts


def heartbeat_interval(timeout):
    """Heartbeats come often enough that a few may be late before ``timeout``."""
    return max(0.5, min(5.0, timeout / 6.0))


def plan(num_workers, num_servers, command, launcher="local", hosts=None, port=None,
         cwd=None, timeout=60.0):
    """The processes to start: a list of ``(label, host, env, argv)``.

    ``env`` holds only the DMLC variables; ``argv`` is the command (for
    scheduler and servers, an interpreter that imports mxnet and serves)."""
    from ..errors import MXGenError
    if num_workers < 1:
        raise MXGenError("-n/--num-workers must be >= 1, got %d" % num_workers)
    num_servers = num_workers if num_servers is None else num_servers
    if num_servers < 1:
        raise MXGenError("-s/--num-servers must be >= 1, got %d" % num_servers)
    if not command:
        raise MXGenError("no worker command: put it after --, e.g. mxgen launch -n 2 --"
                         " mxgen train-text --kvstore dist_sync")
    if launcher == "local":
        hosts = ["127.0.0.1"]
    elif not hosts:
        raise MXGenError("--launcher ssh needs --hosts FILE")
    root = hosts[0]
    if port is not None and not 1 <= port <= 65535:
        raise MXGenError("--port must be in 1-65535, got %d" % port)
    port = port or _free_port()
    if launcher == "local":
        _check_port(root, port)
    base = {"DMLC_PS_ROOT_URI": root, "DMLC_PS_ROOT_PORT": str(port),
            "DMLC_NUM_SERVER": str(num_servers), "DMLC_NUM_WORKER": str(num_workers),
            HEARTBEAT_ENV: "%g" % heartbeat_interval(timeout)}
    serve = python_command(_one_line(_SERVE))   # roles serve on import
    procs = [("scheduler", root, dict(base, DMLC_ROLE="scheduler", DMLC_NODE_HOST=root), serve)]
    for i in range(num_servers):
        host = hosts[i % len(hosts)]
        procs.append(("server %d" % i, host, dict(base, DMLC_ROLE="server",
                                                   DMLC_NODE_HOST=host), serve))
    for i in range(num_workers):
        host = hosts[i % len(hosts)]
        procs.append(("worker %d" % i, host, dict(base, DMLC_ROLE="worker", DMLC_NODE_HOST=host,
                                                   MXGEN_LAUNCH_INDEX=str(i)), list(command)))
    return procs


def ssh_command(host, env, argv, cwd):
    """The ssh command line that runs ``argv`` with ``env`` in ``cwd`` on
    ``host``, inside the wrapper that ends it when the connection closes.
    Host keys are checked as the user's ssh configuration says; ``--``
    keeps a host name from ever being read as an option."""
    exports = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(env.items()))
    wrapped = python_command(_one_line(_REMOTE)) + list(argv)
    remote = "cd %s && env %s %s" % (shlex.quote(cwd), exports,
                                     " ".join(shlex.quote(a) for a in wrapped))
    return ["ssh", "-o", "BatchMode=yes", "--", host, remote]


def _die_with_parent():
    """In the child before exec: SIGKILL it if the launcher dies, even by
    SIGKILL (Linux; elsewhere the launcher's own cleanup is all there is)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Launch:
    """Runs planned processes, relays their output, watches their
    heartbeats, and tears them all down."""

    def __init__(self, procs, launcher="local", cwd=None, out=sys.stdout, timeout=60.0):
        self.procs, self.launcher, self.cwd, self.out = procs, launcher, cwd or os.getcwd(), out
        self.timeout = timeout
        self.running, self.lock = [], threading.Lock()
        self.labels, self.last_beat = {}, {}

    def _relay(self, index, stream):
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n").split("\r")[-1]
            if ALIVE_MARKER in line:
                self.last_beat[index] = time.time()
                line = line.replace(ALIVE_MARKER, "")
                if not line.strip():
                    continue
            if line.startswith(RANK_MARKER):           # the kvstore's rank, once known
                self.labels[index] = "%s, rank %s" % (self.labels[index],
                                                      line[len(RANK_MARKER):].strip())
                continue
            with self.lock:
                self.out.write("[%s] %s\n" % (self.labels[index], line))
                self.out.flush()

    def start(self):
        for index, (label, host, env, argv) in enumerate(self.procs):
            if self.launcher == "ssh":
                # stdin stays open while the launcher lives: when it closes,
                # the remote wrapper ends the remote process group
                full_env, cmd, stdin = dict(os.environ), ssh_command(host, env, argv, self.cwd), \
                    subprocess.PIPE
            else:
                full_env, cmd, stdin = dict(child_env(), **env), argv, subprocess.DEVNULL
            self.labels[index] = label
            proc = subprocess.Popen(cmd, env=full_env, cwd=self.cwd, stdin=stdin,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_die_with_parent)
            threading.Thread(target=self._relay, args=(index, proc.stdout), daemon=True).start()
            self.running.append((index, proc))

    def _lost(self):
        """The first running process silent for longer than ``timeout``
        (after its first heartbeat; a command that never sends one is
        judged by its exit alone), as a reason, else None."""
        now = time.time()
        for index, proc in self.running:
            beat = self.last_beat.get(index)
            if beat is not None and proc.poll() is None and now - beat > self.timeout:
                return "%s is lost: no heartbeat for %.0f s (--timeout %g)" % (
                    self.labels[index], now - beat, self.timeout)
        return None

    def stop(self):
        """SIGTERM every process group, then SIGKILL what is left."""
        for _, proc in self.running:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 3
        for _, proc in self.running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for _, proc in self.running:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def wait(self, poll=0.1, grace=60):
        """0 when every worker exits 0 (servers and scheduler then end too);
        otherwise a one-line reason naming the first process that failed or
        was lost."""
        workers = [p for i, p in self.running if self.labels[i].startswith("worker")]
        others = [(i, p) for i, p in self.running if not self.labels[i].startswith("worker")]
        others_done = None
        while True:
            for index, proc in self.running:
                code = proc.poll()
                if code is not None and code != 0:
                    how = ("killed by signal %d" % -code) if code < 0 else "exit status %d" % code
                    return "%s died (%s)" % (self.labels[index], how)
            lost = self._lost()
            if lost:
                return lost
            if all(p.poll() == 0 for p in workers):
                deadline = time.time() + 10      # the roles shut down once workers finish
                while time.time() < deadline and any(p.poll() is None for _, p in others):
                    time.sleep(poll)
                return 0
            # servers end as soon as every worker has finalized its kvstore, a
            # moment before the workers exit: only a long wait is a failure
            if others_done is None and any(p.poll() == 0 for _, p in others):
                others_done = time.time()
            if others_done is not None and time.time() - others_done > grace:
                return "%s exited while workers kept running" % next(
                    self.labels[i] for i, p in others if p.poll() == 0)
            time.sleep(poll)


def main(args):
    from ..errors import MXGenError
    args = config_from_args(CONFIG, args)[0]
    command = [c for c in args.command if c != "--"]
    if args.launcher == "local" and args.hosts:
        raise MXGenError("--hosts needs --launcher ssh")
    if not args.timeout > 0:
        raise MXGenError("--timeout must be > 0 seconds, got %s" % args.timeout)
    hosts = _read_hosts(args.hosts) if args.hosts else None
    procs = plan(args.num_workers, args.num_servers, command, args.launcher, hosts, args.port,
                 timeout=args.timeout)
    if args.print_commands:
        for label, host, env, argv in procs:
            line = (ssh_command(host, env, argv, os.getcwd()) if args.launcher == "ssh" else
                    ["env"] + ["%s=%s" % kv for kv in sorted(env.items())] + argv)
            print("[%s] %s" % (label, " ".join(shlex.quote(a) for a in line)))
        return 0
    launch = Launch(procs, args.launcher, timeout=args.timeout)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        launch.start()
        result = launch.wait()
    except KeyboardInterrupt:
        launch.stop()
        raise
    finally:
        signal.signal(signal.SIGTERM, old)
    launch.stop()
    if result != 0:
        raise MXGenError("distributed run failed: %s; stopped every other process" % result)
    return 0
