"""The latency-throughput plot (PNG) from the open-loop rate sweep."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "ours": dict(color="tab:blue", marker="o"),
    "naive": dict(color="tab:red", marker="s"),
    "null": dict(color="tab:gray", marker="^", linestyle="--"),
}


def draw(results: dict, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    for label, samples in results.get("open", {}).items():
        kind = results["servers"][label]["kind"]
        points = sorted((s["images_per_s"], s["p50_ms"], s["p99_ms"]) for s in samples if s["p50_ms"] is not None)
        if not points:
            continue
        throughput, p50, p99 = zip(*points)
        name = f"{label} ({results['servers'][label]['note']})"
        for axis, latency in zip(axes, (p50, p99)):
            axis.plot(throughput, latency, label=name, **STYLE.get(kind, {}))
    for axis, title in zip(axes, ("p50", "p99")):
        axis.set_yscale("log")
        axis.set_xlabel("achieved throughput (images/s)")
        axis.set_ylabel(f"{title} latency (ms)")
        axis.set_title(f"{title} latency vs throughput, 1 image per request, open loop")
        axis.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8, loc="upper left")
    machine = results["machine"]
    figure.suptitle(
        f"mnist-serving vs a naive server — {machine['cpu']}, {machine['cores']} cores, {machine['date']}", fontsize=9
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
