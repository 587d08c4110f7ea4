"""Times every detector at its paper configuration: inference, training and peak memory (``make bench-models``).

Each model is built from the ``model:`` section of its MVTec AD config (``configs/<name>_mvtec.yaml``) with
random weights: ``pretrained`` is forced off and ``init_from`` to null (weights do not change the timing).
Inputs are random (B, 3, S, S) images (S = 256, the papers' size).

* Inference: ``model.eval()`` under ``torch.inference_mode()``; one call is ``anomaly_map(image)``, the map
  upsampled to the image size and ``image_score(map)`` (what ``predict_batch`` does, without its NaN check).
  DSR runs its full test path: both reconstructions, detection and upsampling modules, and the image score
  from the detection map. Milliseconds per image at batch 1 and at ``--batch``; the median of ``--repeats``
  timed calls after ``--warmup`` untimed ones.
* Training: one optimizer step = ``compute_loss(batch)`` (anomaly synthesis included), ``backward`` and
  the step of the optimizer from ``configure_optimizers()``, on a synthetic ``Batch`` of ``--batch`` normal
  images. Images per second = images per step / median step time. InTra trains on random windows (manual
  optimization): one step is ``window_batch_size`` windows and a training image is seen in
  ``windows_per_image`` windows per epoch, so a step counts as ``window_batch_size / windows_per_image``
  images.
* Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (reset before each measurement); on CPU the
  process's peak resident set size (``VmHWM``, reset per measurement through ``/proc/self/clear_refs``, else
  ``ru_maxrss``, which never decreases); it includes the Python process, libraries and weights.
* On CUDA every model is also measured with bf16 autocast and channels-last inputs (``--variants``);
  ``--compile`` adds a ``torch.compile`` run of the inference function (training is not compiled: the loss
  synthesizes anomalies with data-dependent Python, so it would recompile at nearly every step).
* DSR side by side with anomalib's ``DsrModel`` (``benchmarks/bench_anomalib_dsr.py``, run by
  ``.venv-anomalib/bin/python`` in a subprocess, same sizes, batches and threads); the ratio anomalib ms /
  adbench ms is recorded (target: >= 1.3).

Writes ``--out`` (JSON, atomically, after every model) and the markdown table beside it (``.md``).

Usage: ``python benchmarks/bench_models.py [--models dsr adtr] [--device cpu] [--threads 2] [--quick]``
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import importlib
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from adbench.data.batch import Batch
from adbench.io import atomic_write_json, atomic_write_text
from adbench.models.base import AnomalyModule

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "adtr": "configs/adtr_mvtec.yaml",
    "adtr_plus": "configs/adtr_plus_mvtec.yaml",
    "intra": "configs/intra_mvtec.yaml",
    "fractalad": "configs/fractalad_mvtec.yaml",
    "dsr": "configs/dsr_mvtec.yaml",
}
#: init_args forced for every model: random weights, nothing downloaded or read from disk.
NO_WEIGHTS = {"pretrained": False, "student_pretrained": False, "weights_path": None, "init_from": None}
#: Extra init_args of ``--quick``: InTra's 256-window optimizer step is minutes on one CPU core.
QUICK_OVERRIDES = {"intra": {"window_batch_size": 16}}
ANOMALIB_PYTHON = REPO / ".venv-anomalib" / "bin" / "python"
ANOMALIB_SCRIPT = REPO / "benchmarks" / "bench_anomalib_dsr.py"
DSR_TARGET_RATIO = 1.3


# ------------------------------------------------------------------------------------------------- models
def model_spec(name: str, overrides: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(class_path, init_args) of a model's MVTec config with the weight options forced off.

    Args:
        name: a key of ``CONFIGS``.
        overrides: init_args replacing the config's (after the forced ones, so they win).
    """
    config = yaml.safe_load((REPO / CONFIGS[name]).read_text())
    section = config["model"]
    init_args = dict(section.get("init_args") or {})
    for key, value in NO_WEIGHTS.items():
        if key in init_args or key in ("pretrained", "init_from"):
            init_args[key] = value
    init_args.update(overrides or {})
    return section["class_path"], init_args


def accepted_args(class_path: str, init_args: dict[str, Any]) -> dict[str, Any]:
    """The ``init_args`` that ``class_path``'s constructor takes (forced keys it lacks are dropped)."""
    module_name, class_name = class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), class_name)
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in init_args.items() if k in accepted}


def build_model(class_path: str, init_args: dict[str, Any]) -> AnomalyModule:
    """Instantiates ``class_path`` with ``init_args`` (keys its constructor lacks are dropped)."""
    module_name, class_name = class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), class_name)
    model = cls(**accepted_args(class_path, init_args))
    if class_name == "DSR":
        # Time the full test path (stage-3 upsampling module included), as a trained stage-3 model runs.
        model.stage_steps[1] = 1
    return model


def infer(model: AnomalyModule, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One inference call: full-resolution anomaly maps (B, 1, H, W) and image scores (B,)."""
    from adbench.models.dsr import DSR

    if isinstance(model, DSR):
        out = model.model(image, use_upsampler=model.upsampler_trained)
        return out.anomaly_map, model.detection_score(out.detection_map)
    return model.predict(image)


def images_per_step(model: AnomalyModule, batch_size: int) -> float:
    """Training images one optimizer step accounts for (InTra: its window share of an image)."""
    hp = model.hparams
    if "windows_per_image" in hp and "window_batch_size" in hp:
        return hp["window_batch_size"] / hp["windows_per_image"]
    return float(batch_size)


def first_optimizer(config: Any) -> torch.optim.Optimizer:
    """The optimizer of whatever ``configure_optimizers`` returned."""
    if isinstance(config, torch.optim.Optimizer):
        return config
    if isinstance(config, dict):
        return first_optimizer(config["optimizer"])
    if isinstance(config, list | tuple) and config:
        return first_optimizer(config[0])
    raise TypeError(f"cannot find an optimizer in {config!r}")


def synthetic_batch(batch_size: int, size: int, device: torch.device, seed: int = 0) -> Batch:
    """Random normal images (label 0, empty masks, fake paths)."""
    generator = torch.Generator().manual_seed(seed)
    return Batch(
        image=torch.rand(batch_size, 3, size, size, generator=generator).to(device),
        label=torch.zeros(batch_size, dtype=torch.long, device=device),
        mask=torch.zeros(batch_size, 1, size, size, device=device),
        path=[f"synthetic/{i:04d}.png" for i in range(batch_size)],
        index=torch.arange(batch_size, device=device),
    )


# ------------------------------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_runs(
    fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int, budget_s: float
) -> list[float]:
    """Seconds of each timed call of ``fn`` after ``warmup`` untimed ones.

    At least one warm-up (when ``warmup`` > 0) and one timed call run; further calls stop once the
    measurement has used ``budget_s`` seconds.
    """
    start = time.perf_counter()
    for i in range(warmup):
        if i > 0 and time.perf_counter() - start > budget_s / 2:
            break
        fn()
        sync(device)
    times: list[float] = []
    for _ in range(repeats):
        if times and time.perf_counter() - start > budget_s:
            break
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _read_status_kb(field: str = "VmHWM") -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_vmhwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _read_status_kb() is not None


def _malloc_trim() -> None:
    """Returns freed heap memory to the system (glibc), so a model's peak RSS carries less of the last one's."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory of one measurement, in MiB: CUDA allocator peak, or the process's peak RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            self.kind = "cuda max_memory_allocated (reset per measurement)"
        elif _reset_vmhwm():
            self.kind = "cpu process peak RSS (VmHWM, reset per measurement via /proc/self/clear_refs)"
        else:
            self.kind = "cpu process peak RSS (ru_maxrss: process-wide high-water mark, never reset)"

    def reset(self) -> float:
        """Starts a measurement; returns the memory in use now (MiB: CUDA allocated, or RSS)."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return torch.cuda.memory_allocated(self.device) / 2**20
        _malloc_trim()
        if "VmHWM" in self.kind:
            _reset_vmhwm()
        return (_read_status_kb("VmRSS") or 0) / 1024

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if "VmHWM" in self.kind:
            return (_read_status_kb() or 0) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ------------------------------------------------------------------------------------------------ variants
VARIANTS = {
    "fp32": {"precision": "fp32", "autocast": None, "channels_last": False, "compile": False},
    "bf16+cl": {"precision": "bf16+cl", "autocast": torch.bfloat16, "channels_last": True, "compile": False},
}


def variants(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Precision variants: ``--variants`` (default fp32, plus bf16 autocast + channels-last on CUDA), then
    with ``--compile`` the last of them compiled."""
    names = args.variants or (["fp32", "bf16+cl"] if device.type == "cuda" else ["fp32"])
    out = [dict(VARIANTS[name]) for name in names]
    if args.compile:
        out.append({**out[-1], "precision": f"{out[-1]['precision']}+compile", "compile": True})
    return out


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
    else:
        with torch.autocast(device.type, dtype=dtype):
            yield


def to_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# --------------------------------------------------------------------------------------------- measurement
def measure_model(
    name: str, args: argparse.Namespace, device: torch.device, memory: PeakMemory
) -> list[dict]:
    """Rows (one per variant and inference batch size) of one model."""
    overrides = dict(QUICK_OVERRIDES.get(name, {})) if args.quick else {}
    overrides.update(args.overrides.get(name, {}))
    class_path, init_args = model_spec(name, overrides)
    torch.manual_seed(0)
    model = build_model(class_path, init_args).to(device)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    batches = sorted({1, args.batch})
    rows = []
    for variant in variants(args, device):
        base = {
            "model": name,
            "class_path": class_path,
            "config": CONFIGS[name],
            "overrides": overrides,
            "init_args": accepted_args(class_path, init_args),
            "device": device_name(device),
            "precision": variant["precision"],
            "image_size": args.image_size,
            "params_m": params / 1e6,
            "trainable_params_m": trainable / 1e6,
        }
        memory_format = torch.channels_last if variant["channels_last"] else torch.contiguous_format
        model.to(memory_format=memory_format)

        model.eval()
        infer_fn: Callable = torch.compile(infer) if variant["compile"] else infer
        inference = {b: measure_inference(model, infer_fn, b, args, device, memory, variant) for b in batches}
        for b in batches:
            print(
                f"  {name} {variant['precision']} batch {b}: {inference[b]['ms_per_image']:.2f} ms/image",
                flush=True,
            )

        # Compiled training is not timed: compute_loss synthesizes anomalies with data-dependent Python
        # (graph breaks and a recompilation at nearly every step), so it would time the compiler.
        train = {} if variant["compile"] else measure_training(model, args, device, memory, variant)
        model.eval()
        for b in batches:
            row = {**base, "batch": b, **inference[b]}
            row["peak_memory_infer_mb"] = row.pop("peak_memory_mb")
            row["memory_before_infer_mb"] = row.pop("memory_before_mb")
            if b == args.batch:
                row.update(train)
            rows.append(row)
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def measure_inference(
    model: AnomalyModule,
    infer_fn: Callable,
    batch_size: int,
    args: argparse.Namespace,
    device: torch.device,
    memory: PeakMemory,
    variant: dict,
) -> dict[str, Any]:
    """Median inference time of a batch of ``batch_size`` random images (model in eval mode)."""
    image = to_format(
        synthetic_batch(batch_size, args.image_size, device, seed=batch_size).image, variant["channels_last"]
    )

    def call() -> None:
        with torch.inference_mode(), autocast(device, variant["autocast"]):
            infer_fn(model, image)

    before = memory.reset()
    warmup = max(args.warmup, 1) if variant["compile"] else args.warmup  # compilation is never timed
    times = timed_runs(call, device, warmup, args.repeats, args.budget)
    seconds = statistics.median(times)
    return {
        "ms_per_image": 1000 * seconds / batch_size,
        "images_per_s": batch_size / seconds,
        "ms_per_batch_runs": [1000 * t for t in times],
        "repeats": len(times),
        "peak_memory_mb": memory.peak_mb(),
        "memory_before_mb": before,
    }


def measure_training(
    model: AnomalyModule, args: argparse.Namespace, device: torch.device, memory: PeakMemory, variant: dict
) -> dict[str, Any]:
    """Median optimizer-step time on a synthetic batch of ``args.batch`` normal images."""
    batch = synthetic_batch(args.batch, args.image_size, device, seed=1)
    batch.image = to_format(batch.image, variant["channels_last"])
    model.train()
    optimizer = first_optimizer(model.configure_optimizers())

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, variant["autocast"]):
            loss = model.compute_loss(batch)["loss"]
        loss.backward()
        optimizer.step()

    before = memory.reset()
    times = timed_runs(step, device, min(args.warmup, 1), args.repeats, args.budget)
    seconds = statistics.median(times)
    per_step = images_per_step(model, args.batch)
    optimizer.zero_grad(set_to_none=True)
    return {
        "train_batch": args.batch,
        "train_images_per_step": per_step,
        "train_ms_per_step": 1000 * seconds,
        "train_ms_per_step_runs": [1000 * t for t in times],
        "train_repeats": len(times),
        "train_images_per_s": per_step / seconds,
        "peak_memory_train_mb": memory.peak_mb(),
        "memory_before_train_mb": before,
    }


# ------------------------------------------------------------------------------------------------ anomalib
def anomalib_dsr(args: argparse.Namespace, device: torch.device, variant: dict) -> dict[str, Any]:
    """Runs ``bench_anomalib_dsr.py`` with ``--anomalib-python``; its JSON result, or {"skipped": reason}."""
    python = Path(os.path.abspath(args.anomalib_python))  # not resolve(): the venv's python is a symlink
    if not python.exists():
        return {
            "skipped": f"{python} not found: create it with `make bench-anomalib-env` (python3 -m venv "
            ".venv-anomalib && .venv-anomalib/bin/pip install torch==2.14.1 torchvision==0.29.1 'anomalib==2.7.*')"
        }
    command = [
        str(python),
        str(ANOMALIB_SCRIPT),
        "--device", device.type,
        "--image-size", str(args.image_size),
        "--batches", *(str(b) for b in sorted({1, args.batch})),
        "--repeats", str(args.repeats),
        "--warmup", str(args.warmup),
        "--threads", str(torch.get_num_threads()),
        "--budget", str(args.budget),
    ]  # fmt: skip
    if variant["autocast"] is not None:
        command.append("--bf16")
    if variant["channels_last"]:
        command.append("--channels-last")
    if variant["compile"]:
        command.append("--compile")
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-2000:]}"}
    return json.loads(lines[-1])


def compare_dsr(rows: list[dict], args: argparse.Namespace, device: torch.device) -> list[dict]:
    """anomalib's DSR against adbench's, per variant and batch size (run right after adbench's DSR)."""
    out = []
    for variant in variants(args, device):
        ours = {r["batch"]: r for r in rows if r["model"] == "dsr" and r["precision"] == variant["precision"]}
        if not ours:
            continue
        theirs = anomalib_dsr(args, device, variant)
        entry: dict[str, Any] = {"precision": variant["precision"], "device": device_name(device)}
        if "skipped" in theirs or "error" in theirs:
            entry.update(theirs)
            print(f"  anomalib dsr {variant['precision']}: {theirs}", flush=True)
            out.append(entry)
            continue
        entry["anomalib"] = {k: v for k, v in theirs.items() if k != "batches"}
        entry["batches"] = []
        for b, result in sorted(theirs["batches"].items(), key=lambda kv: int(kv[0])):
            adbench_ms = ours[int(b)]["ms_per_image"] if int(b) in ours else float("nan")
            ratio = result["ms_per_image"] / adbench_ms
            entry["batches"].append(
                {
                    "batch": int(b),
                    "adbench_ms_per_image": adbench_ms,
                    "anomalib_ms_per_image": result["ms_per_image"],
                    "anomalib_ms_per_batch_runs": result["ms_per_batch_runs"],
                    "ratio_anomalib_over_adbench": ratio,
                    "target_ratio": DSR_TARGET_RATIO,
                    "meets_target": ratio >= DSR_TARGET_RATIO,
                }
            )
            print(
                f"  anomalib dsr {variant['precision']} batch {b}: {result['ms_per_image']:.2f} ms/image, "
                f"ratio anomalib/adbench {ratio:.2f}",
                flush=True,
            )
        out.append(entry)
    return out


# ------------------------------------------------------------------------------------------------- reports
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec)


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown: one row per model, precision and batch size, then the DSR comparison."""
    meta = results["meta"]
    lines = [
        f"# Model benchmark ({meta['timestamp']})",
        "",
        f"Image size {meta['image_size']}x{meta['image_size']}, random weights at each paper's configuration; "
        f"median of up to {meta['repeats']} runs after {meta['warmup']} warm-up runs; torch {meta['torch']}; "
        f"peak memory: {meta['memory_kind']}.{' QUICK MODE: tiny sizes, numbers are not meaningful.' if meta['quick'] else ''}",
        "",
        "| model | device | precision | batch | ms/image | images/s | train images/s | peak memory (MiB) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["results"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r.get('device', '-')} | - | - | error | - | - | - |")
            continue
        memory = _fmt(r.get("peak_memory_infer_mb"), ".0f")
        if "peak_memory_train_mb" in r:
            memory += f" (train {_fmt(r['peak_memory_train_mb'], '.0f')})"
        lines.append(
            f"| {r['model']} | {r['device']} | {r['precision']} | {r['batch']} | {_fmt(r['ms_per_image'])} | "
            f"{_fmt(r['images_per_s'])} | {_fmt(r.get('train_images_per_s'))} | {memory} |"
        )
    errors = [r for r in results["results"] if "error" in r]
    for r in errors:
        lines += ["", f"**{r['model']} failed:** `{r['error'].splitlines()[-1]}`"]
    if results.get("anomalib_dsr"):
        lines += [
            "",
            f"## DSR: adbench vs anomalib (target: anomalib ms / adbench ms >= {DSR_TARGET_RATIO})",
            "",
        ]
        for entry in results["anomalib_dsr"]:
            if "batches" not in entry:
                reason = (entry.get("skipped") or entry.get("error") or "").strip().splitlines()[-1:]
                reason = reason[0] if reason else "unknown"
                lines.append(f"- {entry['precision']}: not measured: {reason}")
                continue
            info = entry["anomalib"]
            lines += [
                f"anomalib {info.get('anomalib_version')} DsrModel, sizes {info.get('sizes')}, "
                f"{entry['precision']}:",
                "",
                "| batch | adbench ms/image | anomalib ms/image | ratio | meets target |",
                "| ---: | ---: | ---: | ---: | --- |",
            ]
            for b in entry["batches"]:
                lines.append(
                    f"| {b['batch']} | {_fmt(b['adbench_ms_per_image'])} | {_fmt(b['anomalib_ms_per_image'])} | "
                    f"{_fmt(b['ratio_anomalib_over_adbench'])} | {'yes' if b['meets_target'] else 'no'} |"
                )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -------------------------------------------------------------------------------------------------- main
def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``MODEL.KEY=VALUE`` items (VALUE read as YAML) -> {model: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        model, dot, key = target.partition(".")
        if not sep or not dot or model not in CONFIGS:
            raise SystemExit(f"--set {item!r}: expected MODEL.KEY=VALUE with MODEL in {sorted(CONFIGS)}")
        out.setdefault(model, {})[key] = yaml.safe_load(value)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        choices=sorted(CONFIGS),
        default=list(CONFIGS),
        help="models to time (default: all)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu or cuda (default: cuda when available, else cpu)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="batched inference size and training batch (default: 32 GPU, 8 CPU)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per measurement (median; default 5)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed runs before each measurement (default 2)"
    )
    parser.add_argument("--image-size", type=int, default=None, help="image height and width (default 256)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice); anomalib gets the same",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds after which a measurement stops repeating (at least one timed run; default 120)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=sorted(VARIANTS),
        default=None,
        help="precision variants: fp32, bf16+cl (bf16 autocast, channels-last); default: fp32 on CPU, both on CUDA",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the last variant's inference with torch.compile (compilation in the warm-up, not timed)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="MODEL.KEY=VALUE",
        help="override one init_arg of a model (VALUE read as YAML), e.g. --set adtr.hidden_dim=64",
    )
    parser.add_argument(
        "--no-anomalib", action="store_true", help="skip the side-by-side run of anomalib's DSR"
    )
    parser.add_argument(
        "--anomalib-python",
        default=str(ANOMALIB_PYTHON),
        help="python of the virtualenv with anomalib 2.7 (default: .venv-anomalib/bin/python; "
        "`make bench-anomalib-env` creates it)",
    )
    parser.add_argument(
        "--out", default="bench/results.json", help="JSON result file; the .md table goes beside it"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: image size 64, batch 2, 1 repeat, 1 warm-up, InTra steps of 16 windows "
        "(explicit options still win); the numbers mean nothing",
    )
    args = parser.parse_args(argv)
    quick = {"image_size": 64, "batch": 2, "repeats": 1, "warmup": 1, "budget": 30.0}
    defaults = {"image_size": 256, "batch": None, "repeats": 5, "warmup": 2, "budget": 120.0}
    for key, value in (quick if args.quick else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.overrides = parse_overrides(args.overrides)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark; returns the results (also written to ``--out`` and its ``.md``)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.batch is None:
        args.batch = 32 if device.type == "cuda" else 8
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    memory = PeakMemory(device)
    results: dict[str, Any] = {
        "meta": {
            "timestamp": datetime.datetime.now().isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "device": device_name(device),
            "image_size": args.image_size,
            "batches": sorted({1, args.batch}),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "budget_s": args.budget,
            "quick": args.quick,
            "memory_kind": memory.kind,
            "statistic": "median",
            "weights": "random (pretrained forced off, init_from null)",
        },
        "results": [],
        "anomalib_dsr": [],
    }
    print(
        f"{len(args.models)} models at {args.image_size}x{args.image_size} on {device_name(device)}, batches "
        f"{results['meta']['batches']}, {args.repeats} repeats after {args.warmup} warm-up"
        f"{' (QUICK: numbers mean nothing)' if args.quick else ''}",
        flush=True,
    )
    failed = False
    for name in args.models:
        start = time.perf_counter()
        print(f"{name}:", flush=True)
        try:
            rows = measure_model(name, args, device, memory)
        except Exception:  # noqa: BLE001 - one model's failure is recorded, the others still run
            failed = True
            error = traceback.format_exc()
            print(error, file=sys.stderr, flush=True)
            rows = [{"model": name, "device": device_name(device), "error": error}]
        results["results"].extend(rows)
        if name == "dsr" and not args.no_anomalib and not any("error" in r for r in rows):
            results["anomalib_dsr"] = compare_dsr(rows, args, device)
        print(f"  ({time.perf_counter() - start:.1f} s)", flush=True)
        atomic_write_json(out, results)
    table = markdown(results)
    atomic_write_json(out, results)
    atomic_write_text(out.with_suffix(".md"), table)
    print()
    print(table)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    if failed:
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main()
