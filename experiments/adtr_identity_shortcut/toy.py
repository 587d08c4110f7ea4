"""Toy case of ADTR Sec. 3.2 (Eq. 4-5): can a 1-layer reconstruction net learn the "identity shortcut"?

Normal features x+ (K tokens of C channels) lie near an r-dimensional subspace S of R^C: token k is
``mu_k + z_k + noise`` with a fixed per-position mean mu_k in S (aligned objects: each grid cell has its own
typical feature), a random on-manifold variation z_k in S and small isotropic noise. Anomalous samples add an
off-manifold vector (a random direction of the complement of S) to some of their tokens. Three one-layer
reconstruction nets are trained on normal samples only with the MSE loss and scored on a test set by the L2
reconstruction error of each token (paper Eq. 3):

* ``fc``: Eq. 4, x_hat = x w + b (a 1x1 convolution), w in R^{C x C}.
* ``query_attention``: Eq. 5 as written, x_hat = softmax(q x^T / sqrt(C)) x with a learned query embedding
  q in R^{K x C} (no projections; the output is a convex combination of the sample's own tokens).
* ``adtr_decoder``: one adbench ADTR ``DecoderLayer`` (1 head, learned query embedding, sine position
  embedding, its MLP) with an input and an output linear projection, as in ``ADTRModel`` without encoder.

Reports per model: training loss, mean per-token error on normal and anomalous test tokens, the token-level
AUROC of that error, for ``fc`` the relative distance ||w - I||_F / ||I||_F over training (also restricted to
S and to its complement), and for the attention models the mean attention weight a token puts on itself.

    python experiments/adtr_identity_shortcut/toy.py                 # demo scale, 3 seeds, ~1 min on 1 CPU thread
    python experiments/adtr_identity_shortcut/toy.py --scale paper   # larger dims, more steps and seeds

Writes results/toy.json, results/toy.md and results/toy.png beside this file (``--output-dir``, ``--name``).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from adbench.io import atomic_write_json, atomic_write_text
from adbench.metrics import image_auroc
from adbench.models.adtr.torch_model import DecoderLayer
from adbench.models.components.position import sine_position_embedding

MODELS = ("fc", "query_attention", "adtr_decoder", "adtr_decoder_no_query")
LABELS = {
    "fc": "FC (Eq. 4)",
    "query_attention": "query attention (Eq. 5)",
    "adtr_decoder": "ADTR DecoderLayer",
    "adtr_decoder_no_query": "ADTR DecoderLayer, no query embedding",
}

# grid: tokens per side (K = grid^2); channels C; rank r of the normal subspace; steps of Adam per model.
SCALES = {
    "tiny": dict(grid=3, channels=8, rank=2, n_train=64, n_test=32, steps=60, seeds=1, log_every=20),
    "demo": dict(grid=4, channels=16, rank=4, n_train=512, n_test=256, steps=2000, seeds=3, log_every=100),
    "paper": dict(grid=8, channels=64, rank=16, n_train=2048, n_test=512, steps=6000, seeds=5, log_every=200),
}
# Adam learning rate per model unless --lr is given: the largest of {0.01, 0.02, 0.05} at which each trains
# stably on the demo toy (the learned-query decoder stalls at the mean reconstruction with 0.05).
LR = {"fc": 0.05, "query_attention": 0.05, "adtr_decoder": 0.02, "adtr_decoder_no_query": 0.02}


# ----------------------------------------------------------------------------------------------- data
class ToyData:
    """Normal / anomalous token sets of one seed.

    Attributes:
        basis: (C, r) orthonormal basis of the normal subspace S.
        complement: (C, C - r) orthonormal basis of its complement.
        train: (n_train, K, C) normal samples.
        test: (n_test, K, C) test samples, half of them with anomalous tokens.
        test_labels: (n_test, K) 1 = anomalous token.
    """

    def __init__(self, args: argparse.Namespace, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        K, C, r = args.grid**2, args.channels, args.rank
        q, _ = torch.linalg.qr(torch.randn(C, C, generator=g))
        self.basis, self.complement = q[:, :r], q[:, r:]
        means = torch.randn(K, r, generator=g)
        self.means = args.position_scale * means / means.norm(dim=1, keepdim=True) @ self.basis.T  # (K, C)
        self.train = self._normal(args.n_train, args, g)
        self.test = self._normal(args.n_test, args, g)
        labels = torch.rand(args.n_test, K, generator=g) < args.anomalous_token_fraction
        labels[: args.n_test // 2] = False  # first half: normal samples
        direction = torch.randn(args.n_test, K, C - r, generator=g) @ self.complement.T
        direction = direction / direction.norm(dim=-1, keepdim=True)
        self.test = self.test + args.anomaly_scale * direction * labels[..., None]
        self.test_labels = labels.long()

    def _normal(self, n: int, args: argparse.Namespace, g: torch.Generator) -> Tensor:
        K, C, r = args.grid**2, args.channels, args.rank
        z = torch.randn(n, K, r, generator=g) / math.sqrt(r) @ self.basis.T  # on-manifold, E|z|^2 = 1
        return self.means + args.manifold_scale * z + args.noise * torch.randn(n, K, C, generator=g)


# --------------------------------------------------------------------------------------------- models
class FC(nn.Module):
    """Eq. 4: x_hat = x w + b, one C x C linear map shared by all tokens (a 1x1 convolution)."""

    def __init__(self, tokens: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)

    @property
    def w(self) -> Tensor:
        """w of Eq. 4 (row-vector convention: x_hat = x w + b)."""
        return self.linear.weight.T


class QueryAttention(nn.Module):
    """Eq. 5: x_hat = softmax(q x^T / sqrt(C)) x with a learned query embedding q (K, C), init N(0, 0.02^2)
    as ADTR's ``query_embed``."""

    def __init__(self, tokens: int, channels: int) -> None:
        super().__init__()
        self.query = nn.Parameter(0.02 * torch.randn(tokens, channels))

    def attention(self, x: Tensor) -> Tensor:
        return torch.softmax(self.query @ x.transpose(1, 2) / math.sqrt(x.shape[-1]), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        return self.attention(x) @ x


class ADTRDecoder(nn.Module):
    """input Linear -> one adbench ``DecoderLayer`` (1 head, sine positions) -> output Linear.

    Args:
        tokens: K (a square number).
        channels: C.
        learned_queries: the decoder's queries are a learned embedding (ADTR); False feeds the projected input
            tokens as queries, as ``ADTRModel(learned_queries=False)`` (the paper's "without query embedding").
    """

    def __init__(self, tokens: int, channels: int, learned_queries: bool = True) -> None:
        super().__init__()
        side = math.isqrt(tokens)
        dim = 4 * math.ceil(channels / 4)
        self.input_proj, self.output_proj = nn.Linear(channels, dim), nn.Linear(dim, channels)
        self.layer = DecoderLayer(dim, heads=1, mlp_dim=4 * dim, dropout=0.0)
        self.query = nn.Parameter(0.02 * torch.randn(tokens, dim)) if learned_queries else None
        self.register_buffer("pos", sine_position_embedding(side, side, dim), persistent=False)
        for module in (self.input_proj, self.output_proj, self.layer):  # ADTRModel's init
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def _queries(self, memory: Tensor) -> Tensor:
        return memory if self.query is None else self.query.expand(memory.shape[0], -1, -1)

    def forward(self, x: Tensor) -> Tensor:
        memory = self.input_proj(x)
        return self.output_proj(self.layer(self._queries(memory), memory, self.pos))

    def attention(self, x: Tensor) -> Tensor:
        """Cross-attention weights (B, K, K) of the layer, recomputed as in ``DecoderLayer.forward``."""
        memory, layer = self.input_proj(x), self.layer
        tgt = self._queries(memory)
        q = tgt + self.pos
        tgt = layer.norm1(tgt + layer.self_attn(q, q, tgt, need_weights=False)[0])
        return layer.cross_attn(tgt + self.pos, memory + self.pos, memory, need_weights=True)[1]


def build(name: str, tokens: int, channels: int) -> nn.Module:
    if name == "adtr_decoder_no_query":
        return ADTRDecoder(tokens, channels, learned_queries=False)
    return {"fc": FC, "query_attention": QueryAttention, "adtr_decoder": ADTRDecoder}[name](tokens, channels)


# ------------------------------------------------------------------------------------------ training
@torch.no_grad()
def evaluate(model: nn.Module, data: ToyData) -> dict[str, float]:
    """Per-token L2 errors ||x - x_hat||_2 on the test set: means on normal / anomalous tokens and AUROC."""
    error = (data.test - model(data.test)).norm(dim=-1).flatten()
    labels = data.test_labels.flatten()
    out = {
        "error_normal": error[labels == 0].mean().item(),
        "error_anomalous": error[labels == 1].mean().item(),
        "token_auroc": image_auroc(error, labels),
    }
    out["error_ratio"] = out["error_anomalous"] / out["error_normal"]
    if isinstance(model, FC):
        eye = torch.eye(data.basis.shape[0])
        delta = model.w - eye  # rows: input directions
        out["w_minus_i"] = (delta.norm() / eye.norm()).item()
        out["w_minus_i_on_subspace"] = ((data.basis.T @ delta).norm() / math.sqrt(data.basis.shape[1])).item()
        out["w_minus_i_off_subspace"] = (
            (data.complement.T @ delta).norm() / math.sqrt(data.complement.shape[1])
        ).item()
        out["b_norm"] = model.linear.bias.norm().item()
    else:
        attention = model.attention(data.test).diagonal(dim1=1, dim2=2).flatten()
        out["self_attention_normal"] = attention[labels == 0].mean().item()
        out["self_attention_anomalous"] = attention[labels == 1].mean().item()
    return out


def train(name: str, data: ToyData, args: argparse.Namespace, seed: int) -> dict:
    """Adam on the MSE of normal samples; returns the final metrics and their history."""
    torch.manual_seed(seed)
    model = build(name, args.grid**2, args.channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr or LR[name])
    g = torch.Generator().manual_seed(seed + 1)
    history: list[dict] = []
    first_loss = None
    for step in range(args.steps + 1):
        if step % args.log_every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                train_loss = nn.functional.mse_loss(model(data.train), data.train).item()
            first_loss = train_loss if first_loss is None else first_loss
            history.append({"step": step, "train_loss": train_loss, **evaluate(model, data)})
            model.train()
        if step == args.steps:
            break
        batch = data.train[torch.randint(len(data.train), (args.batch_size,), generator=g)]
        loss = nn.functional.mse_loss(model(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {"initial_train_loss": first_loss, **history[-1], "history": history}


# ------------------------------------------------------------------------------------------- reporting
def aggregate(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Mean and std (over seeds) of every scalar of the final metrics."""
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float) and k != "step"]
    return {
        k: {"mean": float(np.mean([r[k] for r in runs])), "std": float(np.std([r[k] for r in runs]))}
        for k in keys
    }


def _pm(stats: dict[str, dict[str, float]], key: str, fmt: str = ".3f") -> str:
    if key not in stats:
        return "-"
    return f"{stats[key]['mean']:{fmt}} ± {stats[key]['std']:{fmt}}"


def markdown(summary: dict, config: dict) -> str:
    lrs = ", ".join(f"{name} {LR[name]}" for name in summary)
    lines = [
        f"Toy ADTR Sec. 3.2, scale `{config['scale']}`: K={config['grid'] ** 2} tokens, C={config['channels']}"
        f" channels, normal subspace rank r={config['rank']}, noise {config['noise']}, anomaly scale"
        f" {config['anomaly_scale']}, {config['steps']} Adam steps (lr {config['lr'] or 'per model: ' + lrs},"
        f" batch {config['batch_size']}); mean ± std over {len(config['seeds'])} seeds.",
        "",
        "| model | train loss (start → end) | error normal | error anomalous | anomalous / normal | token AUROC"
        " | self-attention normal / anomalous |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, stats in summary.items():
        attention = "-"
        if "self_attention_normal" in stats:
            attention = f"{_pm(stats, 'self_attention_normal')} / {_pm(stats, 'self_attention_anomalous')}"
        lines.append(
            f"| {LABELS[name]} | {_pm(stats, 'initial_train_loss', '.2g')} → {_pm(stats, 'train_loss', '.2g')}"
            f" | {_pm(stats, 'error_normal')} | {_pm(stats, 'error_anomalous')} | {_pm(stats, 'error_ratio', '.2f')}"
            f" | {_pm(stats, 'token_auroc')} | {attention} |"
        )
    if "fc" in summary:
        fc = summary["fc"]
        lines += [
            "",
            "FC layer at the end: ||w - I||_F / ||I||_F = "
            f"{_pm(fc, 'w_minus_i')} (restricted to the normal subspace S: {_pm(fc, 'w_minus_i_on_subspace')},"
            f" to its complement: {_pm(fc, 'w_minus_i_off_subspace')}), ||b|| = {_pm(fc, 'b_norm')}.",
        ]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def curve(name: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Steps, mean, min and max over seeds (min/max keep the band positive on log axes)."""
        runs = results[name]
        steps = np.array([h["step"] for h in runs[0]["history"]])
        values = np.array([[h[key] for h in r["history"]] for r in runs])
        return steps, values.mean(0), values.min(0), values.max(0)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    if "fc" in results:
        for key, label in [
            ("w_minus_i", "all of R^C"),
            ("w_minus_i_on_subspace", "on normal subspace S"),
            ("w_minus_i_off_subspace", "on complement of S"),
        ]:
            steps, mean, low, high = curve("fc", key)
            axes[0].plot(steps, mean, label=label)
            axes[0].fill_between(steps, low, high, alpha=0.2)
        steps, mean, low, high = curve("fc", "b_norm")
        axes[0].plot(steps, mean, "k:", label="||b|| (absolute)")
    axes[0].set(xlabel="step", ylabel="||w - I||_F / ||I||_F", title="FC (Eq. 4): w -> I? b -> 0?")
    axes[0].set_yscale("log")
    if "fc" in results:
        axes[0].legend()
    for i, name in enumerate(results):
        color = f"C{i}"
        for key, style in [("error_normal", "--"), ("error_anomalous", "-")]:
            steps, mean, _, _ = curve(name, key)
            axes[1].plot(steps, mean, style, color=color)
        steps, mean, low, high = curve(name, "token_auroc")
        axes[2].plot(steps, mean, color=color, label=LABELS[name])
        axes[2].fill_between(steps, low, high, color=color, alpha=0.2)
    axes[1].set(
        xlabel="step",
        ylabel="mean token error ||x - x_hat||",
        title="test error: normal (dashed), anomalous (solid)",
    )
    axes[1].set_yscale("log")
    axes[2].set(
        xlabel="step", ylabel="token AUROC", title="anomaly detection from the error", ylim=(0.4, 1.02)
    )
    axes[2].axhline(0.5, color="gray", lw=0.5)
    axes[2].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="demo", help="preset sizes (default demo)")
    for key, kind, text in [
        ("grid", int, "tokens per side of the feature grid (K = grid^2)"),
        ("channels", int, "feature channels C"),
        ("rank", int, "dimension r < C of the normal subspace S"),
        ("n_train", int, "normal training samples"),
        ("n_test", int, "test samples (first half normal, second half with anomalous tokens)"),
        ("steps", int, "Adam steps per model"),
        ("seeds", int, "number of seeds (0, 1, ...); each draws new data and initial weights"),
        ("log_every", int, "evaluate every this many steps"),
    ]:
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None, help=f"{text} (preset)")
    parser.add_argument("--noise", type=float, default=0.05, help="std of isotropic noise per channel")
    parser.add_argument("--position-scale", type=float, default=2.0, help="norm of the per-position means")
    parser.add_argument("--manifold-scale", type=float, default=1.0, help="rms norm of on-manifold variation")
    parser.add_argument(
        "--anomaly-scale", type=float, default=1.0, help="norm of the off-manifold perturbation"
    )
    parser.add_argument(
        "--anomalous-token-fraction", type=float, default=0.25, help="tokens perturbed in an anomalous sample"
    )
    parser.add_argument(
        "--lr", type=float, default=None, help=f"Adam learning rate of every model (default per model: {LR})"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="samples per step")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to train")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="where the results go",
    )
    parser.add_argument("--name", default="toy", help="file stem of the results: <name>.json, .md, .png")
    args = parser.parse_args(argv)
    for key, value in SCALES[args.scale].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not 0 < args.rank < args.channels:
        parser.error("--rank must be in (0, channels)")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    results: dict[str, list[dict]] = {name: [] for name in args.models}
    for seed in range(args.seeds):
        data = ToyData(args, seed)
        for name in args.models:
            results[name].append(train(name, data, args, seed))
    summary = {name: aggregate(runs) for name, runs in results.items()}
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config["seeds"] = list(range(args.seeds))
    report = {
        "config": config,
        "summary": summary,
        "runs": results,
        "seconds": round(time.time() - start, 2),
    }
    out = args.output_dir
    atomic_write_json(out / f"{args.name}.json", report)
    atomic_write_text(out / f"{args.name}.md", markdown(summary, config))
    plot(results, out / f"{args.name}.png")
    print(markdown(summary, config))
    print(f"{report['seconds']} s; wrote {out / args.name}.json, .md, .png")
    return report


if __name__ == "__main__":
    main()
