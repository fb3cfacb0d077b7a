"""Data-parallel training across processes on MXNet's distributed kvstore.

Every training command takes ``--kvstore``:

* ``local`` / ``device``: one process; over several ``--ctx`` devices the
  gradients are summed by that kvstore (``device`` is the default then).
* ``dist_sync`` / ``dist_device_sync``: one process per worker, started by
  ``mxgen launch`` (which sets the ``DMLC_*`` environment); gradients are
  summed by the parameter servers and every worker applies the same update,
  so N workers with a global batch B train exactly like one process whose
  ``--ctx`` splits B over N devices.
* ``dist_async``: the servers run the optimizer and apply each worker's
  gradient (divided by that worker's share of the batch) as it arrives;
  workers pull the newest weights and never wait for each other.  Not
  reproducible by design; the optimizer's state lives on the servers, out of
  reach of checkpoints (a resume restarts it; the log says so).
* ``horovod``: one process per device started by ``horovodrun``; Horovod's
  allreduce sums the gradients, with the same semantics.

:class:`Cluster` says who this process is (``rank``, ``num_workers``), makes
the Trainer, gives each rank its share of a batch, and gathers per-rank
arrays (the text model's recurrent states) for rank 0's checkpoint.
"""
import os
import sys

import mxnet as mx

from .errors import MXGenError
from .train import optim

__all__ = ["KVSTORES", "Cluster"]

KVSTORES = ("local", "device", "dist_sync", "dist_device_sync", "dist_async", "horovod")
_GATHER_KEY_BASE = 1 << 24


class Cluster:
    """This process's place in a (possibly distributed) run."""

    def __init__(self, kind, ctxs):
        kind = kind or ("device" if len(ctxs) > 1 else "local")
        if kind not in KVSTORES:
            raise MXGenError("unknown kvstore %r; choose from %s" % (kind, ", ".join(KVSTORES)))
        self.kind, self.ctxs = kind, ctxs
        self.rank, self.num_workers, self.kv = 0, 1, None
        self._gather_keys, self._trainers = set(), 0
        self._server_optimizer, self._pending = None, []
        if kind.startswith("dist"):
            if os.environ.get("DMLC_ROLE") != "worker":
                raise MXGenError("--kvstore %s runs as one worker of a distributed launch; start"
                                 " it with: mxgen launch -n 2 -- mxgen <command> --kvstore %s ..."
                                 % (kind, kind))
            self.kv = mx.kv.create(kind)
            self.rank, self.num_workers = self.kv.rank, self.kv.num_workers
            # a line for `mxgen launch`, which labels this worker's output with it
            sys.stdout.write("mxgen-launch-rank: %d\n" % self.rank)
            sys.stdout.flush()
        elif kind == "horovod":
            self.hvd = _import_horovod()
            self.hvd.init()
            self.rank, self.num_workers = self.hvd.rank(), self.hvd.size()
            if len(ctxs) > 1:
                raise MXGenError("--kvstore horovod runs one device per process; start one"
                                 " process per device (horovodrun -np N) with --ctx cpu or"
                                 " --ctx gpu:K")
        elif len(ctxs) > 1:
            self.kv = kind

    @property
    def distributed(self):
        return self.num_workers > 1 or self.kind.startswith("dist")

    @property
    def on_servers(self):
        """Whether the optimizer runs on the parameter servers (``dist_async``)."""
        return self.kind == "dist_async"

    @property
    def is_writer(self):
        """Rank 0 alone writes checkpoints, metrics, plots and samples."""
        return self.rank == 0

    def trainer(self, params, optimizer, options, batch_size=None, native_update=False):
        """A Gluon Trainer summing gradients over devices and workers; each
        worker (and device) applies the update itself, so optimizer states
        stay local and checkpoints hold them.

        Under ``dist_async`` the servers update instead (see
        :class:`ServerTrainer`); ``batch_size`` is then required: the count
        every ``step`` passes (the global batch).  ``native_update``: ``adam``
        becomes :class:`mxgen.train.optim.Adam` (mxgen's native update), for
        networks without convolutions -- oneDNN reorders a convolution's
        weights into its own layout in place when the network runs outside
        training, and a custom op cannot read an array in that layout."""
        if self.kind == "horovod":
            return self._horovod_trainer(params, optimizer, options)
        kv = self.kv
        if isinstance(kv, mx.kv.KVStore):     # one distributed kvstore, a key range per Trainer
            kv = _KeyOffset(kv, self._trainers << 16)
        self._trainers += 1
        if self.on_servers:
            return self._server_trainer(params, optimizer, options, kv, batch_size)
        try:
            if native_update:
                optimizer, options = optim.create(optimizer, options)
            trainer = mx.gluon.Trainer(params, optimizer, options, kvstore=kv,
                                       update_on_kvstore=False if kv else None)
        except (mx.base.MXNetError, ValueError, TypeError) as err:
            raise MXGenError("cannot create optimizer %r: %s" % (optimizer, err)) from None
        if self.kind.startswith("dist"):
            # Gluon initialises kvstore keys lazily, at the first step: the pull
            # of the initial weights then races the first gradient push to the
            # same keys, and a worker can start from a gradient instead of the
            # weights.  Initialise now and wait, before any step.
            trainer._init_kvstore()
            trainer._init_params()
            mx.nd.waitall()
        return trainer

    def _server_trainer(self, params, optimizer, options, kv, batch_size):
        if batch_size is None:
            raise ValueError("dist_async trainers need the batch_size every step passes")
        # a server holds ONE optimizer for all keys: every Trainer must agree
        described = (optimizer, sorted((k, repr(v)) for k, v in options.items()))
        if self._server_optimizer not in (None, described):
            raise MXGenError("--kvstore dist_async runs one optimizer on the servers, but this"
                             " run's networks use different ones (%s vs %s); use dist_sync"
                             % (self._server_optimizer, described))
        self._server_optimizer = described
        options = dict(options, rescale_grad=self.num_workers / batch_size)
        try:
            trainer = ServerTrainer(params, optimizer, options, kvstore=kv,
                                    update_on_kvstore=True)
        except (mx.base.MXNetError, ValueError) as err:
            raise MXGenError("cannot create optimizer %r: %s" % (optimizer, err)) from None
        trainer.batch_size = batch_size
        self._pending.append(trainer)
        return trainer

    def ready(self):
        """Initialise the servers' keys from this process's parameters (rank
        0's values win) once they are final, i.e. after a resume loaded
        them; a collective.  Under ``dist_async`` the servers hold the
        weights, so this must follow the restore; it also sends the
        optimizer once for all trainers, before any gradient arrives."""
        for trainer in self._pending:
            trainer._init_kvstore()
            trainer._init_params()
        mx.nd.waitall()
        self._pending = []

    def _horovod_trainer(self, params, optimizer, options):
        self.hvd.broadcast_parameters(params, root_rank=0)   # every rank starts from rank 0's
        try:
            trainer = self.hvd.DistributedTrainer(params, optimizer, options,
                                                  prefix="mxgen%d_" % self._trainers)
        except (mx.base.MXNetError, ValueError) as err:
            raise MXGenError("cannot create optimizer %r: %s" % (optimizer, err)) from None
        self._trainers += 1
        # Horovod's trainer averages over ranks (it scales by 1/size); mxgen's
        # loops divide the summed gradient by the global batch themselves, as
        # with a kvstore, so undo that factor
        trainer._scale *= self.num_workers
        return trainer

    def close(self):
        """End this worker's part in the distributed kvstore.

        Freeing it is a barrier of all workers, after which rank 0 stops the
        servers.  Left to Python's shutdown, one worker's store may never be
        freed and every process then waits forever; so training ends here,
        on every rank, explicitly."""
        if isinstance(self.kv, mx.kv.KVStore) and self.kv.handle is not None:
            from mxnet.base import _LIB, check_call
            mx.nd.waitall()
            check_call(_LIB.MXKVStoreFree(self.kv.handle))
            self.kv.handle = None           # its __del__ then frees nothing

    def shard(self, size, what="batch"):
        """``(start, stop)`` of this rank's contiguous share of ``size`` items."""
        if size % self.num_workers:
            raise MXGenError("%s of %d does not divide over %d workers; use a multiple of %d"
                             % (what, size, self.num_workers, self.num_workers))
        per = size // self.num_workers
        return self.rank * per, (self.rank + 1) * per

    def gather(self, key, local, axis):
        """Concatenate every rank's ``local`` along ``axis`` (in rank order);
        a collective: every rank must call it with the same int ``key`` and
        shape."""
        if self.num_workers == 1:
            return local
        local = local.as_in_context(mx.cpu())
        if self.kind == "horovod":
            return self.hvd.allgather(local.swapaxes(0, axis), name="mxgen_gather_%d" % key) \
                .swapaxes(0, axis)
        shape = list(local.shape)
        per = shape[axis]
        shape[axis] = per * self.num_workers
        padded = mx.nd.zeros(tuple(shape))
        index = [slice(None)] * len(shape)
        index[axis] = slice(self.rank * per, (self.rank + 1) * per)
        padded[tuple(index)] = local
        # int keys (a kvstore cannot mix int and str keys), far above the
        # Trainer's parameter indices
        name = _GATHER_KEY_BASE + key
        if name not in self._gather_keys:
            self.kv.init(name, mx.nd.zeros(tuple(shape)))
            self._gather_keys.add(name)
        self.kv.push(name, padded)                 # the servers sum: each rank fills its slice
        out = mx.nd.zeros(tuple(shape))
        self.kv.pull(name, out=out)
        return out


class ServerTrainer(mx.gluon.Trainer):
    """A Trainer whose updates run on the parameter servers (``dist_async``).

    The servers received the optimizer, with its ``rescale_grad`` (``1 /``
    this worker's share of the batch) and any learning-rate scheduler, when
    the store was initialised; nothing about it can change afterwards, so
    ``step`` must always pass the same ``batch_size`` and
    ``set_learning_rate`` refuses a new rate (a schedule goes into the
    optimizer as an MXNet ``lr_scheduler``, counted in server updates).
    """
    batch_size = None

    def step(self, batch_size, ignore_stale_grad=False):
        if batch_size != self.batch_size:
            raise MXGenError("under dist_async every step must divide by the same count (%s),"
                             " got %s" % (self.batch_size, batch_size))
        super().step(1, ignore_stale_grad)        # rescale_grad is already in the optimizer

    def set_learning_rate(self, lr):
        if lr != self.learning_rate:
            raise MXGenError("under dist_async the servers' optimizer cannot change its learning"
                             " rate during a run; give it an lr_scheduler")


class _KeyOffset(mx.kv.KVStore):
    """A distributed kvstore seen through keys shifted by ``offset``.

    A Gluon Trainer uses its parameters' indices as keys, so two Trainers on
    one kvstore (the GAN's G and D) would write each other's keys; there is
    one distributed kvstore per process, so each Trainer gets its own range.
    """

    def __init__(self, kv, offset):           # pylint: disable=super-init-not-called
        self.__dict__.update(kv.__dict__)       # the same handle: not a second store
        self._base, self._offset = kv, offset

    def __del__(self):                          # the handle belongs to the base store
        pass

    def _key(self, key):
        return [k + self._offset for k in key] if isinstance(key, (list, tuple)) \
            else key + self._offset

    def init(self, key, value):
        return self._base.init(self._key(key), value)

    def push(self, key, value, priority=0):
        return self._base.push(self._key(key), value, priority)

    def pull(self, key, out=None, priority=0, ignore_sparse=True):
        return self._base.pull(self._key(key), out=out, priority=priority,
                               ignore_sparse=ignore_sparse)

    def pushpull(self, key, value, out=None, priority=0):
        return self._base.pushpull(self._key(key), value, out=out, priority=priority)

    def broadcast(self, key, value, out, priority=0):
        return self._base.broadcast(self._key(key), value, out, priority)


def _import_horovod():
    try:
        import horovod.mxnet as hvd
    except ImportError:
        raise MXGenError("--kvstore horovod needs Horovod built with MXNet support; install it"
                         " after mxnet (README, 'Across machines'), then start the run with"
                         " horovodrun -np N --gloo") from None
    return hvd
