"""JSON-lines metric logs and loss-curve plots."""
import json
import os

__all__ = ["MetricsLog", "plot_curves"]


class MetricsLog:
    """Appends one JSON object per line; on resume, keeps what is there."""

    def __init__(self, path, resume=False):
        self.path = path
        if not resume and os.path.exists(path):
            os.unlink(path)

    def write(self, **record):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def read(self):
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


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
