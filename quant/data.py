"""Datasets as uint8 image tensors: scikit-learn's digits (offline default) and ImageFolder
layouts read with Pillow."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

__all__ = ["IMAGE_SUFFIXES", "DataBundle", "DataError", "digits", "image_folder", "load_data"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


class DataError(ValueError):
    """A dataset that cannot be used, naming the problem and the fix."""


@dataclass
class DataBundle:
    """Train and test sets yielding ``(uint8 (C, H, W) image, int label)``, plus metadata."""

    train: Dataset
    test: Dataset
    classes: list[str]
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    #: SHA-256 (hex) identifying the images and the split: the digits arrays themselves, or
    #: each file's path relative to the root and its size for a folder.
    fingerprint: str = ""

    def test_arrays(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The test set as ``(N, C, H, W)`` uint8 images and ``(N,)`` int64 labels."""
        n = len(self.test) if limit is None else min(limit, len(self.test))
        items = [self.test[i] for i in range(n)]
        return (np.stack([np.asarray(x) for x, _ in items]).astype(np.uint8),
                np.array([int(y) for _, y in items], np.int64))


def _split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split into train and test indices."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = round(len(idx) * test_fraction)
        test.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.array(train, np.int64)), np.sort(np.array(test, np.int64))


def _stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = np.maximum(x.std(axis=(0, 2, 3)), 1e-3)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def digits(*, seed: int = 0, test_fraction: float = 0.2) -> DataBundle:
    """scikit-learn's ``load_digits()``: 1797 real 8x8 grayscale images, 10 classes.

    Pixels 0..16 are scaled to 0..255 (``round(v * 255 / 16)``); one input channel. The
    stratified train/test split is fixed by ``seed`` (359 test images for 0.2).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = d.target.astype(np.int64)
    tr, te = _split(labels, test_fraction, seed)
    mean, std = _stats(images[tr])
    h = hashlib.sha256()
    for arr in (images[tr], labels[tr], images[te], labels[te]):
        h.update(np.ascontiguousarray(arr).tobytes())
    return DataBundle(
        train=TensorDataset(torch.from_numpy(images[tr]), torch.from_numpy(labels[tr])),
        test=TensorDataset(torch.from_numpy(images[te]), torch.from_numpy(labels[te])),
        classes=[str(c) for c in range(10)], channels=1, size=8, mean=mean, std=std,
        name="digits", fingerprint=h.hexdigest())


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` files, decoded with Pillow, resized to ``size`` x ``size``
    (shorter side to ``size``, centre crop), as uint8 ``(C, H, W)`` tensors."""

    def __init__(self, samples: list[tuple[Path, int]], size: int, channels: int) -> None:
        self.samples = samples
        self.size = size
        self.mode = {1: "L", 3: "RGB"}[channels]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                im = im.convert(self.mode)
                w, h = im.size
                scale = self.size / min(w, h)
                nw, nh = max(self.size, round(w * scale)), max(self.size, round(h * scale))
                im = im.resize((nw, nh), Image.BILINEAR)
                left, top = (nw - self.size) // 2, (nh - self.size) // 2
                im = im.crop((left, top, left + self.size, top + self.size))
                arr = np.asarray(im, dtype=np.uint8)
        except OSError as exc:
            raise DataError(f"image {str(path)!r} cannot be decoded ({exc}); remove or "
                            f"replace it") from None
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr)), label


def _scan(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    if not root.is_dir():
        raise DataError(f"dataset folder {str(root)!r} does not exist; give a folder with one "
                        f"sub-folder of images per class (ImageFolder layout), or 'digits'")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
    elif sorted(found) != sorted(classes):
        raise DataError(f"class folders of {str(root)!r} ({found}) differ from the training "
                        f"classes ({classes}); both splits need the same class folders")
    if not classes:
        raise DataError(f"dataset folder {str(root)!r} has no class sub-folders; put the "
                        f"images of each class in root/<class name>/")
    samples = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        samples.extend((p, label) for p in files)
    if not samples:
        raise DataError(f"dataset folder {str(root)!r} holds no images "
                        f"({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return classes, samples


def image_folder(root: str | Path, *, size: int = 224, channels: int = 3, seed: int = 0,
                 test_fraction: float = 0.2) -> DataBundle:
    """An ImageFolder-layout directory: ``root/train/<class>/`` and ``root/val/<class>/`` if
    present (ImageNet style), else ``root/<class>/`` split into train/test by ``seed``."""
    root = Path(root)
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), not {channels!r}")
    if (root / "train").is_dir():
        classes, train = _scan(root / "train")
        val_dir = root / "val" if (root / "val").is_dir() else root / "test"
        _, test = _scan(val_dir, classes)
    else:
        classes, samples = _scan(root)
        tr, te = _split(np.array([y for _, y in samples]), test_fraction, seed)
        train, test = [samples[i] for i in tr], [samples[i] for i in te]
        if not test or not train:
            raise DataError(f"dataset folder {str(root)!r} has too few images to split into "
                            f"train and test; add images or use root/train and root/val")
    if channels == 3 and size >= 64:
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    else:
        probe = ImageFolderDataset(train[:: max(1, len(train) // 256)], size, channels)
        mean, std = _stats(np.stack([probe[i][0].numpy() for i in range(len(probe))]))
    h = hashlib.sha256()
    for split, samples in (("train", train), ("test", test)):
        for path, label in samples:
            h.update(f"{split}\0{path.relative_to(root)}\0{path.stat().st_size}\0{label}\n"
                     .encode())
    return DataBundle(train=ImageFolderDataset(train, size, channels),
                      test=ImageFolderDataset(test, size, channels), classes=classes,
                      channels=channels, size=size, mean=mean, std=std,
                      name=str(root.resolve()), fingerprint=h.hexdigest())


def load_data(spec: str, *, size: int | None = None, channels: int = 3, seed: int = 0
              ) -> DataBundle:
    """``"digits"`` or the path of an ImageFolder-layout directory."""
    if spec == "digits":
        if size not in (None, 8):
            raise DataError(f"the digits images are 8x8; --image-size {size} does not apply")
        return digits(seed=seed)
    return image_folder(spec, size=size or 224, channels=channels, seed=seed)
