"""Per-party feature encoding, fitted on that party's own TRAIN rows only.

Each party encodes its own columns; nothing here ever sees the other party's data.

Numeric columns (float, may contain NaN or +-inf):
    1. non-finite values -> the column's train median (all-missing column -> 0);
    2. ``log1p`` for *count-like* columns: nonnegative on the train rows and with sample skewness
       above ``EncoderConfig.skew_threshold`` (values below 0 at transform time are clipped to 0
       first, so an unseen negative cannot produce NaN);
    3. standardization with the train mean and standard deviation (a constant column -> std 1);
    4. clipping to ``[-clip, clip]`` so an extreme test value cannot blow up the network.

Categorical columns (strings; other objects are converted with ``str``):
    integer codes ``1..k`` for the train vocabulary (sorted, values seen at least ``min_count``
    times on the train rows), ``0`` for anything else (the out-of-vocabulary index). The
    cardinality of a column is ``k + 1``.

Everything is vectorized per column (no Python loop over rows) and deterministic: the same data,
train rows and config give bit-identical encodings in every runner.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from fedads._validation import check_in_range, check_positive_int, fail

_WHERE = "FeatureEncoder"


@dataclass(frozen=True)
class EncoderConfig:
    """Options of :class:`FeatureEncoder`.

    Attributes:
        clip: standardized numeric values are clipped to ``[-clip, clip]`` (default 10).
        min_count: a category needs at least this many train rows to get its own code (default 1).
        skew_threshold: a nonnegative column with train skewness above this is ``log1p``-ed
            (default 1.0).
    """

    clip: float = 10.0
    min_count: int = 1
    skew_threshold: float = 1.0

    def validate(self) -> EncoderConfig:
        check_in_range("EncoderConfig", "clip", self.clip, 0.0, float("inf"), low_inclusive=False)
        check_positive_int("EncoderConfig", "min_count", self.min_count)
        check_in_range("EncoderConfig", "skew_threshold", self.skew_threshold, 0.0, float("inf"))
        return self


@dataclass(frozen=True)
class TowerSpec:
    """What a bottom model needs to know about its party's encoded inputs.

    Attributes:
        n_numeric: number of numeric columns (width of the float32 input).
        cardinalities: per categorical column, number of codes including the OOV code 0.
    """

    n_numeric: int
    cardinalities: tuple[int, ...]


def as_numeric(numeric: np.ndarray | None, n_rows: int | None, where: str) -> np.ndarray:
    """Return ``numeric`` as a 2-D float array ``[n, n_num]`` (``None`` -> ``[n_rows, 0]``)."""
    if numeric is None:
        return np.zeros((n_rows or 0, 0), dtype=np.float32)
    array = np.asarray(numeric)
    if array.ndim != 2:
        raise fail(
            where,
            f"numeric features have shape {array.shape}",
            "pass a 2-D array [n_rows, n_numeric]",
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise fail(
            where,
            f"numeric features have dtype {array.dtype}",
            "pass a float array (NaN for missing)",
        )
    return array


def as_categorical(categorical: np.ndarray | None, n_rows: int | None, where: str) -> np.ndarray:
    """Return ``categorical`` as a 2-D unicode array ``[n, n_cat]`` (``None``: ``[n_rows, 0]``)."""
    if categorical is None:
        return np.zeros((n_rows or 0, 0), dtype="<U1")
    array = np.asarray(categorical)
    if array.ndim != 2:
        raise fail(
            where,
            f"categorical features have shape {array.shape}",
            "pass a 2-D array [n_rows, n_categorical]",
        )
    if array.dtype.kind != "U":
        array = array.astype(str)
    return array


def _check_rows(rows: np.ndarray, n_rows: int, where: str) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise fail(
            where,
            f"rows have shape {rows.shape} and dtype {rows.dtype}",
            "pass a 1-D integer array of row positions",
        )
    if rows.size == 0:
        raise fail(where, "no train rows", "pass at least one train row position")
    if rows.min() < 0 or rows.max() >= n_rows:
        raise fail(
            where,
            f"row positions must lie in [0, {n_rows})",
            "pass positions in the aligned order of this party's data",
        )
    return rows.astype(np.int64, copy=False)


class FeatureEncoder:
    """Encode one party's numeric and categorical columns; see the module docstring.

    Usage: ``enc = FeatureEncoder().fit(numeric, categorical, train_rows)`` then
    ``num, cat = enc.transform(numeric, categorical)``.
    """

    def __init__(self, config: EncoderConfig | None = None) -> None:
        self.config = (config or EncoderConfig()).validate()
        self.median: np.ndarray | None = None  # float64 [n_num]
        self.log_columns: np.ndarray | None = None  # bool [n_num]
        self.mean: np.ndarray | None = None  # float64 [n_num], after log1p
        self.std: np.ndarray | None = None  # float64 [n_num], after log1p
        self.vocabularies: list[np.ndarray] = []  # one sorted unicode array per categorical column

    # ------------------------------------------------------------------ fit / transform
    def fit(
        self, numeric: np.ndarray | None, categorical: np.ndarray | None, rows: np.ndarray
    ) -> FeatureEncoder:
        """Fit on ``rows`` (int positions into the arrays) of ``numeric [n, n_num]`` and
        ``categorical [n, n_cat]``; returns ``self``."""
        n = _n_rows(numeric, categorical)
        num = as_numeric(numeric, n, _WHERE)
        cat = as_categorical(categorical, n, _WHERE)
        if num.shape[0] != cat.shape[0]:
            raise fail(
                _WHERE,
                f"numeric has {num.shape[0]} rows but categorical has {cat.shape[0]}",
                "pass arrays in the same aligned order",
            )
        rows = _check_rows(rows, num.shape[0], _WHERE)

        x = num[rows].astype(np.float64)
        x[~np.isfinite(x)] = np.nan
        n_num = x.shape[1]
        with np.errstate(all="ignore"):
            all_missing = np.isnan(x).all(axis=0) if n_num else np.zeros(0, dtype=bool)
            median = (
                np.zeros(n_num) if x.shape[0] == 0 else np.where(all_missing, 0.0, _nanmedian(x))
            )
        x = np.where(np.isnan(x), median, x)
        nonneg = (x >= 0).all(axis=0)
        log_columns = nonneg & (_skewness(x) > self.config.skew_threshold)
        x[:, log_columns] = np.log1p(x[:, log_columns])
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)

        self.median, self.log_columns, self.mean, self.std = median, log_columns, mean, std
        vocabularies = []
        for j in range(cat.shape[1]):
            values, counts = np.unique(cat[rows, j], return_counts=True)
            vocabularies.append(values[counts >= self.config.min_count])
        self.vocabularies = vocabularies
        return self

    def transform(
        self,
        numeric: np.ndarray | None,
        categorical: np.ndarray | None,
        rows: np.ndarray | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode (optionally only ``rows`` of) the arrays.

        Returns:
            ``(numeric float32 tensor [n, n_num], categorical int64 tensor [n, n_cat])`` where
            categorical code 0 means out-of-vocabulary.
        """
        self._check_fitted()
        n = _n_rows(numeric, categorical)
        num = as_numeric(numeric, n, _WHERE)
        cat = as_categorical(categorical, n, _WHERE)
        if num.shape[1] != self.n_numeric or cat.shape[1] != self.n_categorical:
            raise fail(
                _WHERE,
                f"got {num.shape[1]} numeric / {cat.shape[1]} categorical columns, "
                f"fitted on {self.n_numeric} / {self.n_categorical}",
                "transform the same columns the encoder was fitted on",
            )
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            num, cat = num[rows], cat[rows]
        return torch.from_numpy(self._numeric(num)), torch.from_numpy(self._categorical(cat))

    def _numeric(self, num: np.ndarray) -> np.ndarray:
        assert self.median is not None and self.log_columns is not None
        x = num.astype(np.float32, copy=True)
        bad = ~np.isfinite(x)
        if bad.any():
            x[bad] = np.broadcast_to(self.median.astype(np.float32), x.shape)[bad]
        if self.log_columns.any():
            x[:, self.log_columns] = np.log1p(np.maximum(x[:, self.log_columns], 0.0))
        x -= self.mean.astype(np.float32)
        x /= self.std.astype(np.float32)
        np.clip(x, -self.config.clip, self.config.clip, out=x)
        return x

    def _categorical(self, cat: np.ndarray) -> np.ndarray:
        out = np.zeros(cat.shape, dtype=np.int64)
        for j, vocab in enumerate(self.vocabularies):
            if vocab.size == 0:
                continue
            column = cat[:, j]
            index = np.searchsorted(vocab, column)
            np.minimum(index, vocab.size - 1, out=index)
            out[:, j] = np.where(vocab[index] == column, index + 1, 0)
        return out

    # ------------------------------------------------------------------ shapes
    @property
    def n_numeric(self) -> int:
        self._check_fitted()
        assert self.median is not None
        return int(self.median.shape[0])

    @property
    def n_categorical(self) -> int:
        self._check_fitted()
        return len(self.vocabularies)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Per categorical column: vocabulary size + 1 (the OOV code 0)."""
        self._check_fitted()
        return tuple(int(v.size) + 1 for v in self.vocabularies)

    @property
    def spec(self) -> TowerSpec:
        """The :class:`TowerSpec` a bottom model for these features needs."""
        return TowerSpec(self.n_numeric, self.cardinalities)

    def _check_fitted(self) -> None:
        if self.median is None:
            raise RuntimeError(
                "FeatureEncoder is not fitted; call fit(numeric, categorical, rows) first"
            )

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """Flat numeric arrays that rebuild this encoder exactly (vocabularies as UTF-8 bytes)."""
        self._check_fitted()
        state: dict[str, np.ndarray] = {
            "numeric.median": self.median.copy(),
            "numeric.log": self.log_columns.astype(np.uint8),
            "numeric.mean": self.mean.copy(),
            "numeric.std": self.std.copy(),
            "config": np.array(
                [self.config.clip, self.config.min_count, self.config.skew_threshold],
                dtype=np.float64,
            ),
            "categorical.count": np.array([len(self.vocabularies)], dtype=np.int64),
        }
        for j, vocab in enumerate(self.vocabularies):
            encoded = [v.encode("utf-8") for v in vocab.tolist()]
            offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(e) for e in encoded], dtype=np.int64)
            state[f"categorical.{j}.bytes"] = np.frombuffer(
                b"".join(encoded), dtype=np.uint8
            ).copy()
            state[f"categorical.{j}.offsets"] = offsets
        return state

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> FeatureEncoder:
        """Inverse of :meth:`get_state`."""
        clip, min_count, skew = (float(v) for v in state["config"])
        encoder = cls(EncoderConfig(clip=clip, min_count=int(min_count), skew_threshold=skew))
        encoder.median = np.asarray(state["numeric.median"], dtype=np.float64).copy()
        encoder.log_columns = np.asarray(state["numeric.log"]).astype(bool)
        encoder.mean = np.asarray(state["numeric.mean"], dtype=np.float64).copy()
        encoder.std = np.asarray(state["numeric.std"], dtype=np.float64).copy()
        vocabularies = []
        for j in range(int(state["categorical.count"][0])):
            raw = np.asarray(state[f"categorical.{j}.bytes"], dtype=np.uint8).tobytes()
            offsets = np.asarray(state[f"categorical.{j}.offsets"], dtype=np.int64)
            words = [
                raw[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(offsets.size - 1)
            ]
            vocabularies.append(np.array(words, dtype=str) if words else np.zeros(0, dtype="<U1"))
        encoder.vocabularies = vocabularies
        return encoder


def _n_rows(numeric: np.ndarray | None, categorical: np.ndarray | None) -> int | None:
    for array in (numeric, categorical):
        if array is not None:
            shape = np.shape(array)
            return int(shape[0]) if shape else None
    raise fail(
        _WHERE,
        "no features (numeric and categorical are both None)",
        "pass at least one feature column",
    )


def _nanmedian(x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are handled by the caller
        return np.nanmedian(x, axis=0)


def _skewness(x: np.ndarray) -> np.ndarray:
    """Sample skewness per column (0 for a constant column)."""
    if x.shape[0] == 0:
        return np.zeros(x.shape[1])
    centered = x - x.mean(axis=0)
    var = (centered**2).mean(axis=0)
    third = (centered**3).mean(axis=0)
    with np.errstate(all="ignore"):
        skew = np.where(var > 1e-24, third / np.maximum(var, 1e-300) ** 1.5, 0.0)
    return skew
