"""Validated party tables: what each party holds, loaded from CSV, Parquet or a DataFrame.

:func:`load_party_table` reads one party's table, checks it, infers (or takes declared) column
types and returns a frozen :class:`PartyTable`. Every problem raises
:class:`fedads.errors.InputError` with one message naming the source, the column and the fix;
suspicious but usable columns (all missing, constant) raise a
:class:`fedads.errors.DataWarning` and are kept.

The conversion label and the ``is_existing_customer`` brand flag belong to the e-commerce party:
the social table may not carry them (declared or as a column literally named ``label`` /
``is_existing_customer``), and an e-commerce table whose column has one of these names must
declare it, so a label can never slip in as a feature.

Canonical frame (``PartyTable.frame``), in this column order:

* the key column, as strings (read as text, so ``"0012"`` stays ``"0012"``);
* the feature columns in source order: numeric ones as ``float64`` (bools as 0/1, missing as
  NaN), categorical ones as strings (missing as NaN; :data:`MISSING_CATEGORY` in
  :meth:`PartyTable.categorical_matrix`);
* the label column, then the existing-customer column, as ``int8`` 0/1, if declared.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from fedads._validation import (
    check_choice,
    check_columns_present,
    check_magnitudes,
    check_row_indices,
    examples,
    fail,
    warn,
)
from fedads.errors import InputError

PartyName = Literal["social", "ecommerce"]
PARTIES: tuple[str, ...] = ("social", "ecommerce")
LABEL_NAME = "label"
"""Shared name of the conversion label column (e-commerce only)."""
EXISTING_NAME = "is_existing_customer"
"""Shared name of the brand existing-customer flag column (e-commerce only)."""
KEY_NAME = "key"
"""Shared name of the join-key column (what :mod:`fedads.world` writes)."""
MISSING_CATEGORY = "<missing>"
"""Category string that :meth:`PartyTable.categorical_matrix` uses for missing values."""

_CSV_SUFFIXES = (".csv",)
_PARQUET_SUFFIXES = (".parquet", ".pq")
_ROWS_NOTE = "row 1 = first data row"
COLUMN_ROLES_METADATA = b"fedads.columns"
"""Parquet schema-metadata key under which :meth:`PartyTable.to_parquet` stores column roles."""
ROLE_ARGS: tuple[str, ...] = ("key", "label", "existing", "categorical", "numeric")
"""The column-role arguments of :func:`load_party_table`."""


@dataclass(frozen=True, eq=False)
class PartyTable:
    """One party's validated table.

    Attributes:
        party: ``"social"`` or ``"ecommerce"``.
        source: the file path or the DataFrame's display name, for messages.
        key: name of the join-key column (strings, unique, non-empty).
        frame: canonical DataFrame ``[n_rows, 1 + n_features (+ label) (+ existing)]``; see
            the module docstring for column order and dtypes. Treat it as read-only.
        numeric_columns: numeric feature columns, in frame order.
        categorical_columns: categorical feature columns, in frame order.
        label_column: the 0/1 conversion label column (e-commerce only), or None.
        existing_column: the 0/1 existing-customer column (e-commerce only), or None.
    """

    party: str
    source: str
    key: str
    frame: pd.DataFrame = field(repr=False)
    numeric_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    label_column: str | None = None
    existing_column: str | None = None

    @property
    def n_rows(self) -> int:
        """Number of rows (users)."""
        return len(self.frame)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """All feature columns (numeric and categorical) in frame order."""
        features = set(self.numeric_columns) | set(self.categorical_columns)
        return tuple(c for c in self.frame.columns if c in features)

    def keys(self) -> np.ndarray:
        """Join keys, ``[n_rows]`` numpy str array, in row order."""
        return self._keys.copy()

    def numeric_matrix(self, rows: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """Numeric features, ``float32 [n, n_numeric]`` (NaN where missing).

        Args:
            rows: row positions ``[n]`` (e.g. ``Alignment.rows``); None for all rows in order.
        """
        return self._take(self._numeric, rows, "numeric_matrix")

    def categorical_matrix(self, rows: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """Categorical features as strings, ``[n, n_categorical]``; missing -> MISSING_CATEGORY."""
        return self._take(self._categorical, rows, "categorical_matrix")

    def labels(self, rows: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """Conversion labels, ``float32 [n]`` of 0.0/1.0."""
        if self.label_column is None:
            raise fail(
                f"{self.source} ({self.party} table)",
                "labels() called but the table has no label column",
                "load the e-commerce table with label=<column>",
            )
        return self._take(self._labels, rows, "labels")

    def existing_flags(self, rows: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """Existing-customer flags, ``int8 [n]`` of 0/1."""
        if self.existing_column is None:
            raise fail(
                f"{self.source} ({self.party} table)",
                "existing_flags() called but the table has no existing-customer column",
                "load the e-commerce table with existing=<column>",
            )
        return self._take(self._existing, rows, "existing_flags")

    def column_roles(self) -> dict[str, Any]:
        """The column roles as :func:`load_party_table` arguments.

        Returns ``{"key": str, "label": str | None, "existing": str | None,
        "categorical": [str, ...], "numeric": [str, ...]}``.
        """
        return {
            "key": self.key,
            "label": self.label_column,
            "existing": self.existing_column,
            "categorical": list(self.categorical_columns),
            "numeric": list(self.numeric_columns),
        }

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the canonical frame to ``path`` with its column roles in the file.

        The roles (party, key, label, existing, categorical and numeric columns) go into the
        Parquet schema metadata (:data:`COLUMN_ROLES_METADATA`), so
        ``load_party_table(path, party=...)`` restores an equal table without being told the
        column names: they stay with the party's file, never in shared settings.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = Path(path)
        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        roles = json.dumps({"party": self.party, **self.column_roles()}).encode()
        metadata = {**(table.schema.metadata or {}), COLUMN_ROLES_METADATA: roles}
        pq.write_table(table.replace_schema_metadata(metadata), out)
        return out

    def equals(self, other: object) -> bool:
        """True if ``other`` holds the same party, columns and values (the source may differ)."""
        if not isinstance(other, PartyTable):
            return False
        same_meta = (
            self.party,
            self.key,
            self.numeric_columns,
            self.categorical_columns,
            self.label_column,
            self.existing_column,
        ) == (
            other.party,
            other.key,
            other.numeric_columns,
            other.categorical_columns,
            other.label_column,
            other.existing_column,
        )
        return same_meta and self.frame.equals(other.frame)

    # Cached full matrices: computed once, never handed out (callers get copies / fancy slices).
    @cached_property
    def _keys(self) -> np.ndarray:
        return self.frame[self.key].to_numpy(dtype=str)

    @cached_property
    def _numeric(self) -> np.ndarray:
        columns = list(self.numeric_columns)
        if not columns:
            return np.zeros((self.n_rows, 0), dtype=np.float32)
        return self.frame[columns].to_numpy(dtype=np.float32, na_value=np.nan)

    @cached_property
    def _categorical(self) -> np.ndarray:
        columns = list(self.categorical_columns)
        if not columns:
            return np.zeros((self.n_rows, 0), dtype=str)
        filled = self.frame[columns].astype(object).fillna(MISSING_CATEGORY)
        return filled.to_numpy(dtype=str)

    @cached_property
    def _labels(self) -> np.ndarray:
        return self.frame[self.label_column].to_numpy(dtype=np.float32)

    @cached_property
    def _existing(self) -> np.ndarray:
        return self.frame[self.existing_column].to_numpy(dtype=np.int8)

    def _take(self, full: np.ndarray, rows: Any, method: str) -> np.ndarray:
        if rows is None:
            return full.copy()
        where = f"{self.source} ({self.party} table).{method}"
        return full[check_row_indices(where, rows, self.n_rows)]


def load_party_table(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    party: PartyName,
    key: str | None = None,
    label: str | None = None,
    existing: str | None = None,
    categorical: Sequence[str] | None = None,
    numeric: Sequence[str] | None = None,
    name: str | None = None,
) -> PartyTable:
    """Load and validate one party's table.

    Args:
        source: a ``.csv`` or ``.parquet`` path, or a DataFrame (not modified).
        party: ``"social"`` or ``"ecommerce"``.
        key: the join-key column; read as text, must be non-empty and unique. May be omitted
            only for a Parquet file written by :meth:`PartyTable.to_parquet`: then every
            column role comes from the file (and no other role argument may be given).
        label: the 0/1 conversion column (e-commerce only).
        existing: the 0/1 ``is_existing_customer`` column (e-commerce only).
        categorical: columns to treat as categorical (values become strings; CSV columns
            declared here are read as text, keeping leading zeros).
        numeric: columns to treat as numeric (must hold numbers or bools).
        name: display name of the source in messages (default: the path or ``"<DataFrame>"``).

    Every column other than key/label/existing is a feature; undeclared feature columns are
    typed by dtype: numbers and bools -> numeric, strings and pandas categoricals -> categorical;
    anything else (datetimes, complex, mixed objects) must be converted or declared categorical.

    Returns:
        PartyTable of ``n_rows`` users.

    Raises:
        InputError: any problem with the source, a column or the arguments (one-line message).

    Warns:
        DataWarning: for feature columns that are entirely missing or constant (kept).
    """
    party = check_choice("load_party_table", "party", party, PARTIES)
    display = _display_name(source, name)
    where = f"{display} ({party} table)"
    if key is None:
        roles = _stored_roles(where, source, party)
        if any(arg is not None for arg in (label, existing, categorical, numeric)):
            raise fail(
                where,
                "label=/existing=/categorical=/numeric= given without key=",
                "give key= too (or none of them, for a Parquet file written by "
                "PartyTable.to_parquet)",
            )
        key, label, existing = roles["key"], roles.get("label"), roles.get("existing")
        categorical, numeric = roles.get("categorical"), roles.get("numeric")
    key = _column_arg(where, "key", key, required=True)
    label = _column_arg(where, "label", label)
    existing = _column_arg(where, "existing", existing)
    declared_categorical = _columns_arg(where, "categorical", categorical)
    declared_numeric = _columns_arg(where, "numeric", numeric)

    if party == "social" and (label is not None or existing is not None):
        given = [f"{arg}={value!r}" for arg, value in (("label", label), ("existing", existing))]
        raise fail(
            where,
            f"{', '.join(g for g in given if not g.endswith('None'))} given for the social party, "
            "but the conversion label and the existing-customer flag belong to the e-commerce "
            "party",
            "drop label=/existing= for the social table (or load this table with "
            "party='ecommerce')",
        )
    _check_roles(where, key, label, existing, declared_categorical, declared_numeric)

    raw = _read(source, display, where, key, declared_categorical)
    _check_column_names(where, raw)
    if len(raw) == 0:
        raise fail(where, "the table has no rows", "give a table with at least one data row")
    check_columns_present(where, "key", [key], raw.columns)
    _check_label_columns(where, party, raw, label, existing)
    check_columns_present(where, "declared categorical", declared_categorical, raw.columns)
    check_columns_present(where, "declared numeric", declared_numeric, raw.columns)

    columns: dict[str, pd.Series] = {key: _clean_keys(where, raw[key], key)}
    features = [c for c in raw.columns if c not in (key, label, existing)]
    if not features:
        raise fail(
            where,
            f"no feature columns (only {examples(list(raw.columns))})",
            "add at least one feature column besides the key, label and existing columns",
        )
    numeric_columns: list[str] = []
    categorical_columns: list[str] = []
    for column in features:
        if column in declared_categorical:
            declared: str | None = "categorical"
        elif column in declared_numeric:
            declared = "numeric"
        else:
            declared = None
        kind, values = _convert_feature(where, raw[column], column, declared)
        columns[column] = values
        (numeric_columns if kind == "numeric" else categorical_columns).append(column)
    if label is not None:
        columns[label] = _binary(where, raw[label], label, "label")
    if existing is not None:
        columns[existing] = _binary(where, raw[existing], existing, "existing-customer")

    frame = pd.DataFrame(columns)
    _warn_uninformative(where, frame, features)
    check_magnitudes(where, {c: frame[c].to_numpy() for c in numeric_columns})
    return PartyTable(
        party=party,
        source=display,
        key=key,
        frame=frame,
        numeric_columns=tuple(numeric_columns),
        categorical_columns=tuple(categorical_columns),
        label_column=label,
        existing_column=existing,
    )


# -- arguments ------------------------------------------------------------------------------


def read_column_roles(source: Any) -> dict[str, Any] | None:
    """The column roles stored in a Parquet file by :meth:`PartyTable.to_parquet`, else None.

    Returns ``{"party", "key", "label", "existing", "categorical", "numeric"}`` or None (not a
    Parquet path, or no roles stored).
    """
    if not isinstance(source, str | os.PathLike):
        return None
    path = Path(source)
    if path.suffix.lower() not in _PARQUET_SUFFIXES or not path.is_file():
        return None
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception:  # not Parquet after all: _read reports it with a clear message
        return None
    raw = metadata.get(COLUMN_ROLES_METADATA)
    return None if raw is None else dict(json.loads(raw))


def _stored_roles(where: str, source: Any, party: str) -> dict[str, Any]:
    roles = read_column_roles(source)
    if roles is None:
        raise fail(
            where,
            "no key column given",
            "give key=<join-key column> (only a Parquet file written by PartyTable.to_parquet "
            "carries its column roles)",
        )
    if roles.get("party") != party:
        raise fail(
            where,
            f"the file holds the {roles.get('party')!r} party's table",
            f"load it with party={roles.get('party')!r}, or give the {party} party's file",
        )
    return roles


def _display_name(source: Any, name: str | None) -> str:
    if name is not None:
        return str(name)
    if isinstance(source, pd.DataFrame):
        return "<DataFrame>"
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return f"<{type(source).__name__}>"


def _column_arg(where: str, arg: str, value: Any, *, required: bool = False) -> Any:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise fail(where, f"{arg}={value!r} is not a column name", f"give {arg} as a column name")
    return value


def _columns_arg(where: str, arg: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset):
        raise fail(
            where, f"{arg}={value!r} is not a list of column names", f"give {arg}=[{value!r}]"
        )
    names = list(value)
    for item in names:
        if not isinstance(item, str) or not item:
            raise fail(where, f"{arg} holds {item!r}, not a column name", "give column names")
    return names


def _check_roles(
    where: str,
    key: str,
    label: str | None,
    existing: str | None,
    categorical: list[str],
    numeric: list[str],
) -> None:
    roles = [(r, c) for r, c in (("key", key), ("label", label), ("existing", existing)) if c]
    seen: dict[str, str] = {}
    for role, column in roles:
        if column in seen:
            raise fail(
                where,
                f"column {column!r} is given as both {seen[column]} and {role}",
                "give a different column for each role",
            )
        seen[column] = role
    both = sorted(set(categorical) & set(numeric))
    if both:
        raise fail(
            where,
            f"columns {examples(both)} are declared both categorical and numeric",
            "declare each column once",
        )
    for column in [*categorical, *numeric]:
        if column in seen:
            raise fail(
                where,
                f"column {column!r} is the {seen[column]} column and is declared as a feature",
                "remove it from categorical=/numeric=",
            )


# -- reading --------------------------------------------------------------------------------


def _read(source: Any, display: str, where: str, key: str, categorical: list[str]) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source
    if not isinstance(source, str | os.PathLike):
        raise fail(
            where,
            f"source of type {type(source).__name__} is not supported",
            "give a .csv or .parquet path or a pandas DataFrame",
        )
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in _CSV_SUFFIXES + _PARQUET_SUFFIXES:
        raise fail(
            where,
            f"unsupported file type {suffix or '(no suffix)'!r}",
            "give a .csv or .parquet file (or load it into a DataFrame yourself)",
        )
    if not path.exists():
        raise fail(where, "file not found", "check the path")
    if path.is_dir() and suffix in _CSV_SUFFIXES:
        raise fail(where, "is a directory, not a file", "give the path of a CSV file")
    if path.is_file() and path.stat().st_size == 0:
        raise fail(where, "the file is empty (0 bytes)", "write a header line and data rows")
    try:
        if suffix in _CSV_SUFFIXES:
            text_columns = {key: str, **{column: str for column in categorical}}
            frame = pd.read_csv(path, dtype=text_columns, low_memory=False)
            _check_short_rows(where, path, len(frame.columns))
            return frame
        return pd.read_parquet(path)
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise fail(where, "the file has no header and no data", "write a header line") from None
    except UnicodeDecodeError:
        raise fail(where, "the file is not UTF-8 text", "save it as UTF-8 CSV") from None
    except Exception as exc:  # pandas/pyarrow raise many types; one clear message instead
        kind = "CSV" if suffix in _CSV_SUFFIXES else "Parquet"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail(
            where,
            f"cannot be read as {kind} ({type(exc).__name__}: {detail})",
            f"check that the file is a valid {kind} file",
        ) from None


def _check_short_rows(where: str, path: Path, n_columns: int) -> None:
    """Refuse CSV rows with fewer fields than the header: pandas would fill them with NaN
    silently (a truncated export, a missing delimiter). Blank lines are skipped, as pandas does."""
    short: list[int] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)  # the header
        row = 0
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            row += 1
            if len(fields) < n_columns:
                short.append(row)
    if short:
        raise fail(
            where,
            f"{len(short)} rows have fewer fields than the header's {n_columns}: rows "
            f"{examples(short)} ({_ROWS_NOTE})",
            "write every field (leave a field empty between commas, e.g. a,,c, to mark it missing)",
        )


def _check_column_names(where: str, frame: pd.DataFrame) -> None:
    bad = [c for c in frame.columns if not isinstance(c, str)]
    if bad:
        raise fail(
            where,
            f"column names {examples(bad)} are not strings",
            "rename the columns to strings (e.g. df.columns = df.columns.astype(str))",
        )
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        raise fail(
            where, f"duplicate column names {examples(duplicated)}", "give each column one name"
        )


def _check_label_columns(
    where: str, party: str, frame: pd.DataFrame, label: str | None, existing: str | None
) -> None:
    if party == "social":
        found = [c for c in (LABEL_NAME, EXISTING_NAME) if c in frame.columns]
        if found:
            raise fail(
                where,
                f"the social table has column(s) {examples(found)}; the conversion label and "
                "the existing-customer flag belong to the e-commerce party",
                "drop these columns from the social table",
            )
        return
    for name, declared, arg in (
        (LABEL_NAME, label, "label"),
        (EXISTING_NAME, existing, "existing"),
    ):
        if name in frame.columns and declared is None and name not in (label, existing):
            raise fail(
                where,
                f"column {name!r} is present but {arg}= was not given, so it would be used as a "
                "feature",
                f"pass {arg}={name!r} (or rename the column if it really is a feature)",
            )
    if label is not None:
        check_columns_present(where, "label", [label], frame.columns)
    if existing is not None:
        check_columns_present(where, "existing-customer", [existing], frame.columns)


# -- columns --------------------------------------------------------------------------------


def _row_examples(mask: np.ndarray) -> str:
    return f"rows {examples((np.flatnonzero(mask) + 1).tolist())} ({_ROWS_NOTE})"


def _clean_keys(where: str, series: pd.Series, key: str) -> pd.Series:
    """Keys as strings; refuse missing, blank, non-text and duplicated keys."""
    missing = series.isna().to_numpy()
    if ptypes.is_integer_dtype(series.dtype):
        strings = series.astype("Int64").astype(str).to_numpy(dtype=object)
    elif ptypes.is_object_dtype(series.dtype) or ptypes.is_string_dtype(series.dtype):
        values = series.to_numpy(dtype=object)
        if ptypes.is_object_dtype(series.dtype):
            bad = [v for v in values[~missing] if not isinstance(v, str | int | np.integer)]
            if bad or isinstance(series.dtype, pd.CategoricalDtype):
                raise fail(
                    where,
                    f"key column {key!r} holds non-text values, e.g. {examples(bad)}",
                    "give the keys as strings",
                )
        strings = np.array([v if isinstance(v, str) else str(v) for v in values], dtype=object)
    else:
        raise fail(
            where,
            f"key column {key!r} has dtype {series.dtype}; keys must be text",
            f"read the key column as text (e.g. pd.read_csv(..., dtype={{{key!r}: str}})) "
            "so identifiers keep their exact spelling and leading zeros",
        )
    strings[missing] = ""
    blank = missing | (pd.Series(strings, dtype=object).str.strip() == "").to_numpy()
    if blank.any():
        raise fail(
            where,
            f"key column {key!r} has {int(blank.sum())} empty or missing keys at "
            f"{_row_examples(blank)}",
            "fill in the keys or drop those rows (in CSV files '', 'NA', 'null' and similar "
            "read as missing)",
        )
    keys = pd.Series(strings, dtype=object)
    duplicated = keys.duplicated(keep=False).to_numpy()
    if duplicated.any():
        counts = keys[duplicated].value_counts()
        shown = [f"{k!r} x{n}" for k, n in counts.head(3).items()]
        raise fail(
            where,
            f"key column {key!r} has {len(counts)} duplicated keys over {int(duplicated.sum())} "
            f"rows, e.g. {', '.join(shown)}",
            f"keep one row per key (e.g. df.drop_duplicates(subset=[{key!r}]))",
        )
    return keys.astype("str")


def _convert_feature(
    where: str, series: pd.Series, column: str, declared: str | None
) -> tuple[str, pd.Series]:
    """Return ``("numeric", float64 Series)`` or ``("categorical", str Series)``."""
    dtype = series.dtype
    if declared == "categorical":
        return "categorical", _as_categories(series)
    if ptypes.is_complex_dtype(dtype):
        raise fail(
            where,
            f"column {column!r} has complex dtype {dtype}",
            "convert it to real numbers (e.g. its absolute value) or drop it",
        )
    if (
        ptypes.is_datetime64_any_dtype(dtype)
        or ptypes.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype | pd.IntervalDtype)
    ):
        raise fail(
            where,
            f"column {column!r} has unsupported dtype {dtype}",
            "convert it to a number (e.g. days since a reference date) or declare it "
            f"categorical=[{column!r}]",
        )
    if ptypes.is_bool_dtype(dtype) or ptypes.is_numeric_dtype(dtype):
        return "numeric", _as_float(where, series, column)
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if declared == "numeric":
        if inferred in ("integer", "floating", "mixed-integer-float", "boolean", "decimal"):
            return "numeric", _as_float(where, series, column)
        text = series[series.notna()].head(50)
        bad = [v for v in text if not _is_number(v)][:5]
        raise fail(
            where,
            f"column {column!r} is declared numeric but holds non-numbers, e.g. {examples(bad)}",
            f"fix those values, or declare it categorical=[{column!r}]",
        )
    if isinstance(dtype, pd.CategoricalDtype) or inferred in ("string", "empty"):
        return "categorical", _as_categories(series)
    if inferred in ("integer", "floating", "mixed-integer-float", "boolean"):
        return "numeric", _as_float(where, series, column)
    kinds = sorted({type(v).__name__ for v in series[series.notna()].head(1000)})
    raise fail(
        where,
        f"column {column!r} holds values of unsupported or mixed types {kinds}",
        f"convert it to numbers or to strings, or declare it categorical=[{column!r}]",
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, complex)


def _as_float(where: str, series: pd.Series, column: str) -> pd.Series:
    if ptypes.is_object_dtype(series.dtype):
        if pd.api.types.infer_dtype(series, skipna=True) == "boolean":
            series = series.astype("boolean")
        else:
            series = pd.to_numeric(series)
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        raise fail(
            where,
            f"column {column!r} has {int(infinite.sum())} infinite values at "
            f"{_row_examples(infinite)}",
            "replace them with finite numbers or leave them missing",
        )
    return pd.Series(values, dtype=np.float64)


def _as_categories(series: pd.Series) -> pd.Series:
    missing = series.isna().to_numpy()
    if ptypes.is_float_dtype(series.dtype):
        present = series[~missing]
        if (present == np.floor(present)).all():  # 12.0 -> "12", not "12.0"
            series = series.astype("Int64")
    values = series.to_numpy(dtype=object)
    out = np.empty(len(values), dtype=object)
    out[:] = [str(v) for v in values]
    out[missing] = np.nan
    return pd.Series(out, dtype="str")


def _binary(where: str, series: pd.Series, column: str, role: str) -> pd.Series:
    missing = series.isna().to_numpy()
    if missing.any():
        raise fail(
            where,
            f"{role} column {column!r} has {int(missing.sum())} missing values at "
            f"{_row_examples(missing)}",
            "fill them with 0 or 1, or drop those rows",
        )
    dtype = series.dtype
    if ptypes.is_bool_dtype(dtype) or (
        ptypes.is_numeric_dtype(dtype) and not ptypes.is_complex_dtype(dtype)
    ):
        numbers = series.to_numpy(dtype=np.float64)
    else:  # text such as "0"/"1" is accepted; anything else is reported below
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=-1.0)
    bad = ~np.isin(numbers, (0.0, 1.0))
    if bad.any():
        offending = pd.unique(series[bad].astype(object))
        raise fail(
            where,
            f"{role} column {column!r} is not binary: values {examples(offending)} at "
            f"{_row_examples(bad)}",
            "encode it as 0/1 (1 = yes)",
        )
    return pd.Series(numbers.astype(np.int8), dtype=np.int8)


def _warn_uninformative(where: str, frame: pd.DataFrame, features: list[str]) -> None:
    all_missing = [c for c in features if frame[c].isna().all()]
    constant = [c for c in features if c not in all_missing and frame[c].nunique(dropna=False) <= 1]
    if all_missing:
        warn(
            where,
            f"feature columns {examples(all_missing, 20)} are entirely missing",
            "they are kept but carry no information; fill or drop them",
            stacklevel=4,
        )
    if constant:
        warn(
            where,
            f"feature columns {examples(constant, 20)} are constant",
            "they are kept but carry no information; drop them if that is expected",
            stacklevel=4,
        )
