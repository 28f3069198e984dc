"""Dot-product jobs for the compute-array benches: random and extreme stimuli, golden results."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from amaranth.lib import data

from quant import contract as C
from quant.golden import dot_products
from rtl.config import HwConfig

__all__ = [
    "Job",
    "dsp_every_product_jobs",
    "dsp_job",
    "dsp_jobs",
    "expected",
    "pack_payloads",
    "pot_jobs",
    "unpack_results",
    "vector_fields",
]


@dataclass
class Job:
    """One dot product per array row, fed as ``V`` vectors of ``cols`` activations.

    ``acts`` (V, cols) unsigned activations; ``lanes`` (rows, V, cols) what the hardware's weight
    field receives (PoT-4 codes, or signed 4-bit lane values); ``fixed8`` (rows // 2,) pair
    modes of the DSP array, or None; ``weights`` (rows, V * cols) the integer weight values the
    golden model multiplies (a Fixed-8 pair's weight in its low row, zeros in its high row);
    ``hi`` (V,) the ``hi`` flag of each vector (a ``split_input`` array only: the vector holds
    high nibbles and its activations count 16 times), or None.
    """

    acts: np.ndarray
    lanes: np.ndarray
    weights: np.ndarray
    fixed8: np.ndarray | None = None
    hi: np.ndarray | None = None

    @property
    def vectors(self) -> int:
        return self.acts.shape[0]


def expected(job: Job) -> np.ndarray:
    """The golden model's dot products of one job: (rows,) int64. A ``hi`` vector's
    activations are the high nibbles of the pixels ``16 * hi + lo``: they count 16 times."""
    acts = np.asarray(job.acts, dtype=np.int64)
    if job.hi is not None:
        acts = acts * np.where(np.asarray(job.hi, dtype=bool), 16, 1)[:, None]
    return dot_products(acts.reshape(1, -1), job.weights)[0]


def _act_max(cfg: HwConfig) -> int:
    """Largest value on an array input: a pixel, or a pixel's nibble on a split_input array."""
    return cfg.max_array_input


def _with_hi(cfg: HwConfig, jobs: list[Job], n_extreme: int, seed: int) -> list[Job]:
    """On a ``split_input`` array give every job ``hi`` flags: each extreme job three times,
    with ``hi`` on every vector (the largest products: 16 * 15 times the largest weights), on
    none and on every other vector, and random ``hi`` flags (half the vectors) on the random
    jobs. Other arrays: the jobs unchanged."""
    if not cfg.split_input:
        return jobs
    rng = np.random.default_rng(seed + 1_000_003)
    out = []
    for job in jobs[:n_extreme]:
        for hi in (np.ones(job.vectors), np.zeros(job.vectors), np.arange(job.vectors) % 2):
            out.append(replace(job, hi=hi.astype(np.int64)))
    for job in jobs[n_extreme:]:
        out.append(replace(job, hi=(rng.random(job.vectors) < 0.5).astype(np.int64)))
    return out


def _random_acts(rng: np.random.Generator, cfg: HwConfig, shape: tuple[int, ...]) -> np.ndarray:
    """Layer activations (act_bits) or first-layer pixels (input_bits), often with zeros."""
    hi = (1 << cfg.act_bits) - 1 if rng.random() < 0.5 else _act_max(cfg)
    acts = rng.integers(0, hi + 1, size=shape)
    acts[rng.random(shape) < 0.1] = 0
    acts[rng.random(shape) < 0.05] = hi
    return acts


def _pot_job(cfg: HwConfig, acts: np.ndarray, codes: np.ndarray) -> Job:
    return Job(acts=acts, lanes=codes, weights=C.pot_decode(codes).reshape(codes.shape[0], -1))


def pot_jobs(cfg: HwConfig, n_random: int, seed: int) -> list[Job]:
    """Extreme jobs (every code incl. the reserved 8, max activations, longest reduction with
    the largest magnitudes), then random jobs totalling at least ``n_random`` vectors."""
    rng = np.random.default_rng(seed)
    rows, cols, amax = cfg.pot_rows, cfg.pot_cols, _act_max(cfg)
    all_codes = np.arange(16)
    jobs = []
    for act in (amax, (1 << cfg.act_bits) - 1, 1, 0):
        codes = np.resize(all_codes, (rows, 2, cols))
        codes = (codes + np.arange(rows)[:, None, None]) % 16  # every code in every lane
        jobs.append(_pot_job(cfg, np.full((2, cols), act), codes))
    longest = -(-cfg.max_reduction // cols)
    for value in (-(1 << C.POT_EXP_MAX), 1 << C.POT_EXP_MAX):
        codes = np.full((rows, longest, cols), int(C.pot_encode(value)))
        jobs.append(_pot_job(cfg, np.full((longest, cols), amax), codes))
    n_extreme = len(jobs)
    total = 0
    while total < n_random:
        v = int(rng.integers(1, 9)) if rng.random() < 0.9 else int(rng.integers(9, 41))
        codes = rng.integers(0, 16, size=(rows, v, cols))
        codes[codes == 8] = 0  # reserved code: covered by the extreme jobs
        jobs.append(_pot_job(cfg, _random_acts(rng, cfg, (v, cols)), codes))
        total += v
    return _with_hi(cfg, jobs, n_extreme, seed)


def dsp_job(acts: np.ndarray, w: np.ndarray, fixed8: np.ndarray) -> Job:
    """``w`` (rows, V, cols): Fixed-4 values, or in a Fixed-8 pair's low row the 8-bit weight."""
    lanes = w.copy()
    weights = w.copy()
    for k in np.flatnonzero(fixed8):
        w8 = w[2 * k]
        lanes[2 * k] = ((w8 & 15) ^ 8) - 8  # the low nibble's bits, read as a signed lane
        lanes[2 * k + 1] = w8 >> 4
        weights[2 * k + 1] = 0
    lo4, hi4 = C.weight_range("fixed4")
    if lanes.min() < lo4 or lanes.max() > hi4:
        raise ValueError(f"DSP lane values must be in [{lo4}, {hi4}], found "
                         f"[{lanes.min()}, {lanes.max()}]")
    return Job(acts=acts, lanes=lanes, weights=weights.reshape(w.shape[0], -1),
               fixed8=fixed8.astype(np.int64))


def dsp_jobs(cfg: HwConfig, n_random: int, seed: int) -> list[Job]:
    """Extreme jobs (-8/7, -128/127, max activations, longest reduction), then random jobs of
    mixed Fixed-4/Fixed-8 pairs totalling at least ``n_random`` vectors."""
    rng = np.random.default_rng(seed)
    rows, cols, amax = cfg.dsp_rows, cfg.dsp_cols, _act_max(cfg)
    pairs = rows // 2
    has8 = "fixed8" in cfg.weight_formats
    lo4, hi4 = C.weight_range("fixed4")
    lo8, hi8 = C.weight_range("fixed8")
    none8 = np.zeros(pairs, dtype=bool)
    all8 = np.ones(pairs, dtype=bool) if has8 else none8
    half8 = (np.arange(pairs) % 2 == 1) if has8 else none8
    jobs = []
    longest = -(-cfg.max_reduction // cols)
    for v, act in ((2, amax), (longest, amax), (2, (1 << cfg.act_bits) - 1)):
        acts = np.full((v, cols), act)
        for a, b in ((lo4, hi4), (hi4, lo4), (lo4, lo4), (hi4, hi4)):
            w = np.empty((rows, v, cols), dtype=np.int64)
            w[0::2], w[1::2] = a, b
            jobs.append(dsp_job(acts, w, none8))
        if has8:
            for value in (lo8, hi8, -1, 15, 16, -16):
                jobs.append(dsp_job(acts, np.full((rows, v, cols), value), all8))
            w = np.full((rows, v, cols), lo4)
            w[2::4] = lo8  # the low rows of the odd (Fixed-8) pairs
            jobs.append(dsp_job(acts, w, half8))
    n_extreme = len(jobs)
    total = 0
    while total < n_random:
        v = int(rng.integers(1, 9)) if rng.random() < 0.9 else int(rng.integers(9, 41))
        fixed8 = (rng.random(pairs) < 0.3) & has8
        w = rng.integers(lo4, hi4 + 1, size=(rows, v, cols))
        w8 = rng.integers(lo8, hi8 + 1, size=(rows, v, cols))
        w8[rng.random(w8.shape) < 0.05] = lo8
        w8[rng.random(w8.shape) < 0.05] = hi8
        for k in np.flatnonzero(fixed8):
            w[2 * k] = w8[2 * k]
        jobs.append(dsp_job(_random_acts(rng, cfg, (v, cols)), w, fixed8))
        total += v
    return _with_hi(cfg, jobs, n_extreme, seed)


def dsp_every_product_jobs(cfg: HwConfig, seed: int) -> list[Job]:
    """Every activation times every Fixed-4 weight combination of the lanes of the first DSP48E1
    row, then every activation times every Fixed-8 weight on every pair, one combination per
    column, one vector per job; lanes outside the combination get random weights."""
    rng = np.random.default_rng(seed)
    rows, cols, amax = cfg.dsp_rows, cfg.dsp_cols, _act_max(cfg)
    lo4, hi4 = C.weight_range("fixed4")
    lo8, hi8 = C.weight_range("fixed8")
    n = min(cfg.dsp_pack, rows)
    acts = np.arange(amax + 1)
    w4 = np.arange(lo4, hi4 + 1)
    grids = np.meshgrid(*([w4] * n), acts, indexing="ij")
    combos = [g.ravel() for g in grids]  # n weight columns, then the activation
    jobs: list[Job] = []
    none8 = np.zeros(rows // 2, dtype=bool)

    def chunks(total: int):
        for k in range(0, total, cols):
            idx = np.arange(k, k + cols) % total
            yield idx

    for idx in chunks(combos[0].size):
        w = rng.integers(lo4, hi4 + 1, size=(rows, 1, cols))
        for i in range(n):
            w[i, 0] = combos[i][idx]
        jobs.append(dsp_job(combos[n][idx][None, :], w, none8))
    if "fixed8" in cfg.weight_formats and rows >= 2:
        w8, a8 = (g.ravel() for g in np.meshgrid(np.arange(lo8, hi8 + 1), acts, indexing="ij"))
        all8 = np.ones(rows // 2, dtype=bool)
        for idx in chunks(w8.size):
            w = np.broadcast_to(w8[idx], (rows, 1, cols)).copy()  # high rows are ignored
            jobs.append(dsp_job(a8[idx][None, :], w, all8))
    if cfg.split_input:  # the products do not depend on hi: every other vector has it set
        jobs = [replace(job, hi=np.array([k % 2])) for k, job in enumerate(jobs)]
    return jobs


def vector_fields(job: Job) -> dict[str, np.ndarray]:
    """The job's input vectors as payload fields, one row per vector (V, n) integers."""
    v = job.vectors
    fields = {
        "act": job.acts,
        "weight": job.lanes.transpose(1, 0, 2).reshape(v, -1),
        "first": (np.arange(v) == 0)[:, None],
        "last": (np.arange(v) == v - 1)[:, None],
    }
    if job.fixed8 is not None:
        fields["fixed8"] = np.broadcast_to(job.fixed8, (v, job.fixed8.size))
    if job.hi is not None:
        fields["hi"] = np.asarray(job.hi).reshape(v, 1)
    return fields


def pack_payloads(layout: data.StructLayout, fields: dict[str, np.ndarray]) -> list[int]:
    """Pack (V, n) field arrays into V payload integers at the layout's field offsets.

    Each field is a flat run of ``n`` equal-width elements, element 0 in the lowest bits (how
    Amaranth lays out arrays, nested arrays row by row); values are taken modulo their width.
    """
    n_vec = next(iter(fields.values())).shape[0]
    bits = np.zeros((n_vec, layout.size), dtype=np.uint8)
    for name, field in layout:
        values = np.asarray(fields[name], dtype=np.int64).reshape(n_vec, -1)
        width = field.width // values.shape[1]
        if width * values.shape[1] != field.width:
            raise ValueError(f"field {name!r}: {values.shape[1]} values do not fill "
                             f"{field.width} bits")
        b = (values[:, :, None] >> np.arange(width)) & 1
        bits[:, field.offset:field.offset + field.width] = b.reshape(n_vec, -1)
    packed = np.packbits(bits, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack_results(value: int, rows: int, acc_bits: int) -> np.ndarray:
    """An output payload integer to its (rows,) signed accumulator values."""
    mask, sign = (1 << acc_bits) - 1, 1 << (acc_bits - 1)
    out = [(value >> (r * acc_bits)) & mask for r in range(rows)]
    return np.array([(x ^ sign) - sign for x in out], dtype=np.int64)
