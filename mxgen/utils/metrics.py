"""JSON-lines metric logs and loss-curve plots."""
import json
import os

__all__ = ["MetricsLog", "plot_curves"]


class MetricsLog:
    """Appends one JSON object per line.

    A new run appends to the log of its (new, empty) run folder.  A resumed
    run passes ``keep_until``, the step of the checkpoint it resumes from:
    records of later steps (logged by the interrupted run after that
    checkpoint) are dropped, so no step appears twice.
    """

    def __init__(self, path, keep_until=None, enabled=True, tensorboard=None):
        self.path, self.enabled, self.tensorboard = path, enabled, tensorboard
        if not enabled:                   # another rank writes this log
            return
        if keep_until is not None and os.path.exists(path):
            kept = [r for r in self.read() if r.get("step", 0) <= keep_until]
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in kept)
            os.replace(tmp, path)

    def write(self, **record):
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.scalars(record)

    def read(self):
        if not os.path.exists(self.path):
            return []
        records = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except ValueError:        # a line cut short by a kill: skip it
                    pass
        return records


def plot_curves(records, path, series, x="step", title=None, ylabel="loss"):
    """Plot ``series`` (keys of the records) against ``x`` into a PNG.

    ``series`` maps a record key to the record ``kind`` it is read from, e.g.
    ``{"train_bpc": "train", "val_bpc": "val"}``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, kind in series.items():
        pts = [(r[x], r[key]) for r in records if r.get("kind") == kind and key in r]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o" if kind != "train" else None, label=key)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


class TensorBoard:
    """Optional TensorBoard event files (``--tensorboard``) through
    tensorboardX, a writer that needs no deep-learning framework: every
    numeric field of a metrics record becomes the scalar ``kind/field`` at
    the record's step; sample grids and generated text go in as images and
    text.  Rank 0 alone writes."""

    def __init__(self, folder):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            from ..errors import MXGenError
            raise MXGenError("--tensorboard needs tensorboardX: pip install tensorboardX (or"
                             " pip install -e '.[tensorboard]')") from None
        self.writer = SummaryWriter(folder, flush_secs=10)

    def scalars(self, record):
        step, kind = record.get("step", 0), record.get("kind", "train")
        for key, value in record.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                self.writer.add_scalar("%s/%s" % (kind, key), value, step)

    def image(self, tag, path, step):
        """A PNG written by the run (a sample grid), as an image summary."""
        import numpy as np
        from PIL import Image
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"))
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def text(self, tag, text, step):
        self.writer.add_text(tag, text, step)

    def close(self):
        self.writer.close()
