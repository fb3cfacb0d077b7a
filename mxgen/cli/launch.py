"""Launch a distributed run: MXNet's parameter-server roles as processes.

``mxgen launch -n 2 -- mxgen train-text --kvstore dist_sync ...`` starts a
scheduler, ``-s`` servers (default: as many as workers) and ``-n`` workers
on 127.0.0.1 with the ``DMLC_*`` environment MXNet's distributed kvstore
reads, prefixes every output line with its role and index, and stops
everything (the whole process group of each) as soon as any process fails,
naming it, or on Ctrl-C.  ``--launcher ssh --hosts FILE`` starts the same
roles on the listed hosts over ssh (workers and servers round-robin, the
scheduler on the first host); ``--print-commands`` shows the command lines
without running them.
"""
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

__all__ = ["get_parser", "main", "plan", "Launch", "RANK_MARKER"]

# A worker prints this line (then its rank) once its kvstore knows it; the
# launcher relabels that worker's output with it and drops the line.
RANK_MARKER = "mxgen-launch-rank:"


def get_parser(parser):
    parser.add_argument("-n", "--num-workers", type=int, required=True,
                        help="worker processes")
    parser.add_argument("-s", "--num-servers", type=int, default=None,
                        help="server processes (default: as many as workers)")
    parser.add_argument("--launcher", choices=["local", "ssh"], default="local",
                        help="local: all processes here on 127.0.0.1 (default); ssh: on the"
                             " hosts of --hosts")
    parser.add_argument("--hosts", default=None,
                        help="file with one host per line (ssh launcher)")
    parser.add_argument("--port", type=int, default=None,
                        help="scheduler port (default: a free one)")
    parser.add_argument("--print-commands", action="store_true",
                        help="print the command line of every process and exit")
    parser.add_argument("command", nargs="+", help="the worker command, after --")
    return parser


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
    return hosts


def plan(num_workers, num_servers, command, launcher="local", hosts=None, port=None,
         cwd=None):
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
    port = port or _free_port()
    if launcher == "local":
        _check_port(root, port)
    base = {"DMLC_PS_ROOT_URI": root, "DMLC_PS_ROOT_PORT": str(port),
            "DMLC_NUM_SERVER": str(num_servers), "DMLC_NUM_WORKER": str(num_workers)}
    serve = [sys.executable, "-c", "import mxnet"]       # scheduler and servers serve on import
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
    """The ssh command line that runs ``argv`` with ``env`` in ``cwd`` on ``host``."""
    exports = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(env.items()))
    remote = "cd %s && env %s %s" % (shlex.quote(cwd), exports,
                                     " ".join(shlex.quote(a) for a in argv))
    return ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes", host, remote]


def _die_with_parent():
    """In the child before exec: SIGKILL it if the launcher dies, even by
    SIGKILL (Linux; elsewhere the launcher's own cleanup is all there is)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Launch:
    """Runs planned processes, relays their output, and tears them all down."""

    def __init__(self, procs, launcher="local", cwd=None, out=sys.stdout):
        self.procs, self.launcher, self.cwd, self.out = procs, launcher, cwd or os.getcwd(), out
        self.running, self.lock = [], threading.Lock()

    def _relay(self, label, stream):
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n").split("\r")[-1]
            if line.startswith(RANK_MARKER):           # the kvstore's rank, once known
                label = "%s, rank %s" % (label, line[len(RANK_MARKER):].strip())
                continue
            with self.lock:
                self.out.write("[%s] %s\n" % (label, line))
                self.out.flush()

    def start(self):
        for label, host, env, argv in self.procs:
            if self.launcher == "ssh":
                full_env, cmd = dict(os.environ), ssh_command(host, env, argv, self.cwd)
            else:
                full_env, cmd = dict(os.environ, **env), argv
            proc = subprocess.Popen(cmd, env=full_env, cwd=self.cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
            threading.Thread(target=self._relay, args=(label, proc.stdout), daemon=True).start()
            self.running.append((label, proc))

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
        otherwise a one-line reason naming the first process that failed."""
        workers = [(l, p) for l, p in self.running if l.startswith("worker")]
        others = [(l, p) for l, p in self.running if not l.startswith("worker")]
        others_done = None
        while True:
            for label, proc in self.running:
                code = proc.poll()
                if code is not None and code != 0:
                    how = ("killed by signal %d" % -code) if code < 0 else "exit status %d" % code
                    return "%s died (%s)" % (label, how)
            if all(p.poll() == 0 for _, p in workers):
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
                    l for l, p in others if p.poll() == 0)
            time.sleep(poll)


def main(args):
    from ..errors import MXGenError
    command = [c for c in args.command if c != "--"]
    hosts = _read_hosts(args.hosts) if args.hosts else None
    if args.launcher == "local" and args.hosts:
        raise MXGenError("--hosts needs --launcher ssh")
    procs = plan(args.num_workers, args.num_servers, command, args.launcher, hosts, args.port)
    if args.print_commands:
        for label, host, env, argv in procs:
            line = (ssh_command(host, env, argv, os.getcwd()) if args.launcher == "ssh" else
                    ["env"] + ["%s=%s" % kv for kv in sorted(env.items())] + argv)
            print("[%s] %s" % (label, " ".join(shlex.quote(a) for a in line)))
        return 0
    launch = Launch(procs, args.launcher)

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
