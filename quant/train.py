"""Training CLI: float model -> per-filter scheme assignment -> QAT -> export to the integer
model, checked with the golden model (``python -m quant.train --help``)."""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from . import contract as C
from . import golden
from .assign import Assignment, assign_schemes, filter_hessian_eigenvalues
from .data import DataBundle, DataError, load_data
from .export import export_qmodel
from .model_format import ModelFormatError, QModel
from .qmodel import QuantResNet
from .resnet import CheckpointError, ResNet18, load_checkpoint_state
from .schemes import parse_ratio

__all__ = ["RUN_FILES", "TrainError", "build_parser", "float_cache_path", "main", "run",
           "run_settings"]

#: Files a run writes into its folder; ``--force`` removes exactly these, nothing else.
RUN_FILES = ("run.json", "checkpoint.pt", "checkpoint.tmp", "assignment.json", "model.npz",
             "metrics.json")
#: Options that do not change what a run computes (where it writes, how it reports, which
#: device, loader processes); every other option is part of the run's settings.
_NOT_SETTINGS = {"out", "root", "resume", "force", "device", "workers", "threads",
                 "no_progress"}
#: Settings that change the float model (the key of its cache).
_FLOAT_SETTINGS = ("data", "image_size", "channels", "width", "small_stem", "pretrained",
                   "float_epochs", "batch_size", "lr", "weight_decay", "label_smoothing",
                   "seed", "max_steps", "world_size")


class TrainError(ValueError):
    """A training run that cannot go on, naming the problem and the fix."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m quant.train",
        description="Quantization-aware training of ResNet-18 with per-filter PoT-4 / Fixed-4 / "
                    "Fixed-8 weights, exported to the integer model format.")
    p.add_argument("--data", default="digits",
                   help="'digits' (scikit-learn's 8x8 digits, offline; default) or an "
                        "ImageFolder-layout directory (root/train/<class>/, root/val/<class>/ "
                        "or root/<class>/)")
    p.add_argument("--image-size", type=int, default=None,
                   help="side of the square input for ImageFolder data (default 224)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=3,
                   help="image channels for ImageFolder data (digits are 1 channel)")
    p.add_argument("--ratio", default="60:35:5",
                   help="PoT-4:Fixed-4:Fixed-8 filter ratio per layer, e.g. 60:35:5, 65:30:5, "
                        "0:100:0, or a preset (ilmpq-1, ilmpq-2, fixed, pot, pot-fixed)")
    p.add_argument("--first-last-8bit", action="store_true",
                   help="make every filter of conv1 and fc Fixed-8 (the papers' baseline)")
    p.add_argument("--act-bits", type=int, choices=(4, 5), default=4)
    p.add_argument("--width", type=float, default=None,
                   help="channel multiplier (default 0.25 for digits, 1.0 otherwise)")
    p.add_argument("--small-stem", choices=("auto", "yes", "no"), default="auto",
                   help="3x3/1 stem without max-pool (auto: for inputs under 64 pixels)")
    p.add_argument("--pretrained", default=None,
                   help="torchvision-format ResNet-18 state_dict to start from instead of "
                        "training the float model here")
    p.add_argument("--float-epochs", type=int, default=40,
                   help="epochs of float training when no --pretrained model (cached under "
                        "<root>/float/)")
    p.add_argument("--epochs", type=int, default=6, help="QAT epochs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="float training learning rate (AdamW, "
                                                         "cosine schedule)")
    p.add_argument("--weight-decay", type=float, default=5e-4,
                   help="float training weight decay (AdamW)")
    p.add_argument("--label-smoothing", type=float, default=0.1,
                   help="float training label smoothing")
    p.add_argument("--qat-lr", type=float, default=5e-4, help="QAT learning rate (AdamW, "
                                                              "cosine schedule)")
    p.add_argument("--kd", type=float, default=0.0,
                   help="QAT knowledge distillation weight in [0, 1]: the loss is "
                        "(1 - kd) * cross-entropy + kd * T^2 * KL(float teacher || student) "
                        "at temperature --kd-temp (0: no distillation)")
    p.add_argument("--kd-temp", type=float, default=4.0, help="distillation temperature T")
    p.add_argument("--hessian-iters", type=int, default=5, help="power-iteration steps")
    p.add_argument("--hessian-probes", type=int, default=4,
                   help="random-sign probes per power step (see quant.assign)")
    p.add_argument("--hessian-exact", action="store_true",
                   help="one Hessian-vector product per filter (exact blocks; slow)")
    p.add_argument("--calib-images", type=int, default=128,
                   help="training images for the Hessian and the activation clip calibration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None,
                   help="output root: default run folders and the float model cache "
                        "(<root>/float/) live here (default: the parent of --out if given, "
                        "else runs)")
    p.add_argument("--out", default=None,
                   help="run folder (default <root>/<data>-<ratio>[-fl8]-a<bits>-w<width>-"
                        "s<seed>-<hash of every setting>)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint.pt; refused if any "
                        "setting differs")
    g.add_argument("--force", action="store_true",
                   help="overwrite the run already in --out (its files only)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda[:N]")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 for the digits data, whose tiny layers "
                        "only lose time to thread synchronization, else torch's default)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop each training phase after this many steps per epoch (for quick "
                        "tests)")
    p.add_argument("--eval-limit", type=int, default=None,
                   help="evaluate the integer model on at most this many test images")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


# ---- helpers -----------------------------------------------------------------------------------

def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _dist() -> tuple[int, int]:
    """(rank, world size); starts the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _warn(rank: int, text: str) -> None:
    if rank == 0:
        print(f"warning: {text}", file=sys.stderr, flush=True)


def _device(spec: str) -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise TrainError(f"unknown --device {spec!r}; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"--device {spec} asked for a GPU but torch sees none; use --device cpu")
    return dev


def _augment(x: torch.Tensor, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random shift by up to 1/8 of the side (zero fill) and, for photos, horizontal flip."""
    _n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, [pad] * 4)
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    x = padded[:, :, dy:dy + h, dx:dx + w]
    if flip and torch.rand((), generator=gen) < 0.5:
        x = x.flip(3)
    return x


def _loader(ds: Dataset, batch: int, shuffle: bool, seed: int, workers: int,
            world: int) -> DataLoader:
    sampler = DistributedSampler(ds, shuffle=shuffle, seed=seed) if world > 1 else None
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch, shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=workers, generator=gen, drop_last=False)


def _images(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True).float() / 255.0


@torch.no_grad()
def evaluate_float(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Top-1 accuracy (%) of a float or fake-quant model."""
    model.eval()
    correct = total = 0
    for x, y in loader:
        pred = model(_images(x, device)).argmax(1).cpu()
        correct += int((pred == y).sum())
        total += len(y)
    return 100.0 * correct / max(total, 1)


def evaluate_integer(qm: QModel, data: DataBundle, limit: int | None = None,
                     batch: int = 128) -> tuple[float, int]:
    """Top-1 accuracy (%) of an exported integer model, run by the golden model."""
    n = len(data.test) if limit is None else min(limit, len(data.test))
    correct = 0
    for start in range(0, n, batch):
        items = [data.test[i] for i in range(start, min(n, start + batch))]
        x = np.stack([np.asarray(a) for a, _ in items]).astype(np.int64)
        y = np.array([int(b) for _, b in items])
        correct += int((golden.predict(qm, x) == y).sum())
    return 100.0 * correct / max(n, 1), n


def _save_checkpoint(content: dict[str, Any], ckpt: Path) -> None:
    """Write ``ckpt`` through a temporary file, so an interruption never leaves half a file."""
    torch.save(content, ckpt.with_suffix(".tmp"))
    ckpt.with_suffix(".tmp").replace(ckpt)


def _load_checkpoint(ckpt: Path) -> dict[str, Any]:
    """A run checkpoint, read without unpickling arbitrary objects."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise TrainError(f"checkpoint {str(ckpt)!r} is damaged or truncated "
                         f"({type(exc).__name__}); delete it, or start the run again with "
                         f"--force") from None
    need = ("settings", "model", "optim", "sched", "aug_rng", "epoch", "history", "assignment")
    lacks = [k for k in need if not isinstance(state, dict) or k not in state]
    if lacks:
        raise TrainError(f"checkpoint {str(ckpt)!r} is not a run checkpoint of this version "
                         f"(it lacks {', '.join(lacks)}); start the run again with --force")
    return state


def _distill(out: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, weight: float,
             temp: float) -> torch.Tensor:
    """``(1 - weight) * CE + weight * T^2 * KL(teacher || student)`` at temperature ``temp``."""
    ce = F.cross_entropy(out, y)
    kl = F.kl_div(F.log_softmax(out / temp, 1), F.log_softmax(teacher / temp, 1),
                  log_target=True, reduction="batchmean")
    return (1 - weight) * ce + weight * temp * temp * kl


def _fit(model: nn.Module, params: list[nn.Parameter], data: DataBundle, args: argparse.Namespace,
         epochs: int, lr: float, device: torch.device, world: int, rank: int, label: str,
         ckpt: Path | None = None, state: dict[str, Any] | None = None,
         save_extra: dict[str, Any] | None = None,
         teacher: nn.Module | None = None) -> list[dict[str, float]]:
    """AdamW + cosine schedule; checkpoints after every epoch when ``ckpt`` is given. Float
    training uses ``--weight-decay`` and ``--label-smoothing``; QAT with a ``teacher`` (the
    float model) distils from it with weight ``--kd``."""
    loader = _loader(data.train, args.batch_size, True, args.seed, args.workers, world)
    test_loader = _loader(data.test, 256, False, args.seed, args.workers, 1)
    steps = len(loader) if args.max_steps is None else min(len(loader), args.max_steps)
    is_float = label == "float"
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=args.weight_decay if is_float else 0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * steps))
    gen = torch.Generator().manual_seed(args.seed + 1)
    start, history = 0, []
    if state is not None:
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["aug_rng"])
        start, history = state["epoch"], state["history"]
    flip = data.name != "digits"
    for epoch in range(start, epochs):
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        model.train()
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(total=steps, desc=f"{label} {epoch + 1}/{epochs}", leave=False,
                   disable=args.no_progress or rank != 0, file=sys.stderr)
        for i, (x, y) in enumerate(loader):
            if i >= steps:
                break
            x = _augment(_images(x, device), flip, gen)
            y = y.to(device)
            out = model(x)
            if teacher is not None and args.kd > 0:
                with torch.no_grad():
                    target = teacher(x)
                loss = _distill(out, target, y, args.kd, args.kd_temp)
            else:
                loss = F.cross_entropy(out, y,
                                       label_smoothing=args.label_smoothing if is_float else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(y)
            correct += int((out.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}")
        bar.close()
        inner = model.module if hasattr(model, "module") else model
        test_acc = evaluate_float(inner, test_loader, device)
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1),
                        "train_acc": 100 * correct / max(seen, 1), "test_acc": test_acc})
        if rank == 0:
            if not args.no_progress:
                tqdm.write(f"{label} epoch {epoch + 1}/{epochs}: loss {loss_sum / max(seen, 1):.4f}"
                           f" train {100 * correct / max(seen, 1):.1f}% test {test_acc:.2f}%",
                           file=sys.stderr)
            if ckpt is not None:
                _save_checkpoint({**(save_extra or {}), "model": inner.state_dict(),
                                  "optim": opt.state_dict(), "sched": sched.state_dict(),
                                  "aug_rng": gen.get_state(), "epoch": epoch + 1,
                                  "history": history}, ckpt)
        _barrier(world)
    return history


def _wrap(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    if world > 1:
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


# ---- the pipeline ------------------------------------------------------------------------------

def _arch(args: argparse.Namespace, data: DataBundle) -> dict[str, Any]:
    width = args.width if args.width is not None else (0.25 if data.name == "digits" else 1.0)
    small = {"auto": data.size < 64, "yes": True, "no": False}[args.small_stem]
    return {"num_classes": len(data.classes), "in_channels": data.channels, "width": width,
            "small_stem": small, "input_size": data.size, "mean": list(data.mean),
            "std": list(data.std)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_settings(args: argparse.Namespace, data: DataBundle, arch: dict[str, Any],
                 ratio: tuple[int, int, int], world: int) -> dict[str, Any]:
    """Every setting that changes what a run computes, resolved (defaults filled in, the data
    and a ``--pretrained`` file identified by content): the run's identity."""
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_SETTINGS}
    settings.update(data={"name": data.name, "fingerprint": data.fingerprint},
                    image_size=data.size, channels=data.channels, ratio=list(ratio),
                    width=arch["width"], small_stem=arch["small_stem"], world_size=world)
    if args.pretrained:
        path = Path(args.pretrained)
        settings["pretrained"] = {"file": path.name, "sha256": _sha256(path)}
    return settings


def _digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{k}: {_short(old.get(k, '(unset)'))} in the run, {_short(new.get(k, '(unset)'))} "
            f"now" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def float_cache_path(root: Path, settings: dict[str, Any]) -> Path:
    """Where the float model of these settings is cached: named by every setting that
    changes the float model."""
    key = {k: settings[k] for k in _FLOAT_SETTINGS}
    return (Path(root) / "float" / f"{Path(settings['data']['name']).name}-w{settings['width']:g}"
            f"-e{settings['float_epochs']}-s{settings['seed']}-{_digest(key)}.pt")


def _float_model(args: argparse.Namespace, data: DataBundle, arch: dict[str, Any],
                 settings: dict[str, Any], root: Path, device: torch.device, world: int,
                 rank: int) -> tuple[ResNet18, float | None]:
    net = ResNet18(**arch)
    if args.pretrained:
        load_checkpoint_state(net, args.pretrained)
        return net.to(device), None
    key = {k: settings[k] for k in _FLOAT_SETTINGS}
    cache = float_cache_path(root, settings)
    if cache.is_file():
        try:
            saved = torch.load(cache, map_location="cpu", weights_only=True)
            if not isinstance(saved, dict) or saved.get("key") != key \
                    or saved.get("arch") != arch:
                raise ValueError("its settings differ")
            net.load_state_dict(saved["model"])
            return net.to(device), saved.get("test_acc")
        except Exception as exc:  # damaged in any way: say so, then train again
            _warn(rank, f"float model cache {str(cache)!r} is unusable "
                        f"({type(exc).__name__}: {str(exc)[:80]}); training the float model again")
    _seed_all(args.seed)
    net = ResNet18(**arch).to(device)
    _fit(_wrap(net, device, world), list(net.parameters()), data, args, args.float_epochs,
         args.lr, device, world, rank, "float")
    acc = evaluate_float(net, _loader(data.test, 256, False, 0, args.workers, 1), device)
    if rank == 0:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            torch.save({"key": key, "arch": arch, "model": net.state_dict(), "test_acc": acc},
                       tmp)
            tmp.replace(cache)
        except OSError as exc:  # a finished training is still used, only not cached
            _warn(rank, f"cannot write the float model cache {str(cache)!r} ({exc.strerror}); "
                        f"going on without caching it")
    return net, acc


def _assignment(args: argparse.Namespace, net: ResNet18, data: DataBundle,
                ratio: tuple[int, int, int], device: torch.device) -> Assignment:
    eig = None
    if ratio[2]:  # only Fixed-8 needs the Hessian
        gen = torch.Generator().manual_seed(args.seed)
        idx = torch.randperm(len(data.train), generator=gen)[:args.calib_images].tolist()
        items = [data.train[i] for i in idx]
        x = _images(torch.stack([a for a, _ in items]), device)
        y = torch.tensor([int(b) for _, b in items], device=device)
        eig = filter_hessian_eigenvalues(net, [(x, y)], iters=args.hessian_iters,
                                         probes=args.hessian_probes, exact=args.hessian_exact,
                                         seed=args.seed)
    return assign_schemes(net, ratio, eigenvalues=eig, first_last_8bit=args.first_last_8bit,
                          seed=args.seed)


#: (option, smallest allowed value, None allowed) for the numeric options.
_LIMITS: tuple[tuple[str, float, bool], ...] = (
    ("epochs", 0, False), ("float_epochs", 0, False), ("batch_size", 1, False),
    ("calib_images", 1, False), ("hessian_iters", 1, False), ("hessian_probes", 1, False),
    ("workers", 0, False), ("threads", 1, True), ("image_size", 1, True), ("eval_limit", 1, True),
    ("max_steps", 1, True))


def _check_args(args: argparse.Namespace) -> None:
    for key, low, optional in _LIMITS:
        value = getattr(args, key)
        if value is None and optional:
            continue
        if value is None or value < low:
            kind = "a positive integer" if low == 1 else "an integer >= 0"
            raise TrainError(f"--{key.replace('_', '-')} must be {kind}, not {value}")
    for key in ("lr", "qat_lr", "kd_temp"):
        value = getattr(args, key)
        if not value > 0:
            raise TrainError(f"--{key.replace('_', '-')} must be positive, not {value}")
    if args.width is not None and not args.width > 0:
        raise TrainError(f"--width must be positive, not {args.width}")
    for key in ("kd", "label_smoothing"):
        if not 0 <= getattr(args, key) <= 1:
            raise TrainError(f"--{key.replace('_', '-')} must be between 0 and 1, not "
                             f"{getattr(args, key)}")
    if not args.weight_decay >= 0:
        raise TrainError(f"--weight-decay must be >= 0, not {args.weight_decay}")


def _run_folder(args: argparse.Namespace, data: DataBundle, settings: dict[str, Any]
                ) -> tuple[Path, Path]:
    """(output root, run folder)."""
    if args.root is not None:
        root = Path(args.root)
    elif args.out is not None:
        root = Path(args.out).parent
    else:
        root = Path("runs")
    ratio = "-".join(map(str, settings["ratio"]))
    name = (f"{Path(data.name).name}-{ratio}{'-fl8' if args.first_last_8bit else ''}"
            f"-a{args.act_bits}-w{settings['width']:g}-s{args.seed}-{_digest(settings)}")
    return root, Path(args.out) if args.out is not None else root / name


def _claim_folder(args: argparse.Namespace, out: Path, settings: dict[str, Any]
                  ) -> dict[str, Any] | None:
    """Check the run folder against ``--resume``/``--force``; the checkpoint to resume from."""
    present = [f for f in RUN_FILES if (out / f).exists()]
    if args.resume:
        if not present:
            raise TrainError(f"--resume: run folder {str(out)!r} holds no run; start it without "
                             f"--resume")
        ckpt = out / "checkpoint.pt"
        if ckpt.is_file():
            state = _load_checkpoint(ckpt)
            old, source = state["settings"], f"checkpoint {str(ckpt)!r}"
        else:
            state = None
            try:
                old = json.loads((out / "run.json").read_text())["settings"]
            except (OSError, ValueError, KeyError, TypeError):
                raise TrainError(f"--resume: run folder {str(out)!r} has neither a checkpoint "
                                 f"nor a readable run.json; start again with --force") from None
            source = f"run {str(out)!r}"
        diff = _differences(old, settings)
        if diff:
            raise TrainError(f"--resume: {source} was made with other settings ("
                             f"{'; '.join(diff)}); resume with the run's settings, or use "
                             f"another --out")
        return state
    if present and not args.force:
        raise TrainError(f"run folder {str(out)!r} already holds a run ({', '.join(present)}); "
                         f"use --resume to continue it, --force to overwrite it, or another "
                         f"--out")
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole pipeline; returns the metrics it also writes to ``<out>/metrics.json``."""
    t0 = time.time()
    _check_args(args)
    rank, world = _dist()
    device = _device(args.device)
    ratio = parse_ratio(args.ratio)
    threads = args.threads or (1 if args.data == "digits" else None)
    if threads is not None:
        torch.set_num_threads(threads)
    data = load_data(args.data, size=args.image_size, channels=args.channels, seed=args.seed)
    arch = _arch(args, data)
    if args.pretrained:  # refuse a wrong file before anything is written
        load_checkpoint_state(ResNet18(**arch), args.pretrained)
    settings = run_settings(args, data, arch, ratio, world)
    root, out = _run_folder(args, data, settings)
    ckpt = out / "checkpoint.pt"
    state = _claim_folder(args, out, settings)
    _barrier(world)  # every rank has looked at the folder before rank 0 writes into it
    if rank == 0:
        try:
            out.mkdir(parents=True, exist_ok=True)
            if args.force:
                for f in RUN_FILES:
                    (out / f).unlink(missing_ok=True)
            (out / "run.json").write_text(json.dumps(
                {"settings": settings, "digest": _digest(settings), "argv": sys.argv[1:],
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
        except OSError as exc:
            raise TrainError(f"cannot write the run folder {str(out)!r} ({exc.strerror}); give "
                             f"a writable --out or --root") from None
    net, float_acc = _float_model(args, data, arch, settings, root, device, world, rank)
    teacher = None
    if args.kd > 0:
        teacher = copy.deepcopy(net).eval()
        for prm in teacher.parameters():
            prm.requires_grad_(False)
    if state is not None:
        assignment = Assignment.from_dict(state["assignment"])
        assign_s = float(state.get("assign_s", 0.0))
    else:
        t = time.time()
        assignment = _assignment(args, net, data, ratio, device)
        if world > 1:
            box = [assignment.to_dict()]
            dist.broadcast_object_list(box, src=0)
            assignment = Assignment.from_dict(box[0])
        assign_s = time.time() - t
    q = QuantResNet(net, assignment.torch_schemes(), args.act_bits).to(device)
    if state is not None:
        q.load_state_dict(state["model"])
    else:
        gen = torch.Generator().manual_seed(args.seed)
        idx = torch.randperm(len(data.train), generator=gen)[:args.calib_images].tolist()
        q.calibrate(_images(torch.stack([data.train[i][0] for i in idx]), device))
    if rank == 0:
        (out / "assignment.json").write_text(json.dumps(assignment.to_dict()))
    _seed_all(args.seed)
    history = _fit(_wrap(q, device, world), list(q.parameters()), data, args, args.epochs,
                   args.qat_lr, device, world, rank, "qat", ckpt=ckpt, state=state,
                   save_extra={"settings": settings, "assignment": assignment.to_dict(),
                               "assign_s": assign_s}, teacher=teacher)
    if rank != 0:
        return {}
    q = q.cpu().eval()
    meta = {"ratio": list(assignment.ratio), "first_last_8bit": assignment.first_last_8bit,
            "seed": args.seed, "epochs": args.epochs, "float_epochs": args.float_epochs,
            "data": data.name, "classes": data.classes, "settings": settings}
    qm = export_qmodel(q, meta=meta)
    path = qm.save(out / "model.npz")
    int_acc, n = evaluate_integer(QModel.load(path), data, args.eval_limit)
    metrics = {"model": str(path), "data": data.name, "ratio": list(assignment.ratio),
               "first_last_8bit": assignment.first_last_8bit, "act_bits": args.act_bits,
               "seed": args.seed, "epochs": args.epochs, "float_epochs": args.float_epochs,
               "width": arch["width"], "float_test_acc": float_acc,
               "fake_quant_test_acc": history[-1]["test_acc"] if history else None,
               "integer_test_acc": int_acc, "integer_test_images": n,
               "filters": assignment.totals(),
               "filters_per_layer": {k: {name: int((v == code).sum())
                                         for code, name in enumerate(C.SCHEMES)}
                                     for k, v in assignment.schemes.items()},
               "assign_seconds": round(assign_s, 2),
               "seconds": round(time.time() - t0, 1), "history": history,
               "settings": settings, "digest": _digest(settings)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if not args.no_progress:
        print(f"float {float_acc if float_acc is None else f'{float_acc:.2f}%'}; integer model "
              f"{int_acc:.2f}% on {n} test images (golden model); wrote {path}")
    return metrics


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (DataError, CheckpointError, TrainError, ModelFormatError) as exc:
        raise SystemExit(f"error: {exc}") from None
    except ValueError as exc:
        if "ratio" in str(exc):
            raise SystemExit(f"error: --ratio: {exc}") from None
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
