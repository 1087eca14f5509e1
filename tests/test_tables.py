"""Party tables: loading, type inference, every refusal and warning, CSV/Parquet parity."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedads.errors import DataWarning, InputError
from fedads.tables import MISSING_CATEGORY, PartyTable, load_party_table


def ecommerce_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": ["0012", "0034", "a9", "0001"],
            "spend": [1.5, 0.0, 3.25, 2.0],
            "visits": [1, 2, 3, 4],
            "member": [True, False, True, False],
            "city": ["paris", "lyon", None, "paris"],
            "zip": ["0750", "0690", "0750", "1300"],
            "label": [0, 1, 1, 0],
            "is_existing_customer": [1, 0, 0, 1],
        }
    )


def social_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"key": ["0012", "0099", "a9"], "likes": [3, 0, 7], "region": ["n", "s", "n"]}
    )


ECOM = dict(party="ecommerce", key="key", label="label", existing="is_existing_customer")


def load_ecom(source, **kwargs) -> PartyTable:
    return load_party_table(source, **{**ECOM, "categorical": ["zip"], **kwargs})


def write_csv(tmp_path: Path, frame: pd.DataFrame, name: str = "t.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def expect_error(match_all: list[str], source, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        load_party_table(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for needle in match_all:
        assert needle in message, (needle, message)
    return message


# -- happy path ------------------------------------------------------------------------------


def test_dataframe_table_shape_types_and_accessors() -> None:
    table = load_ecom(ecommerce_frame(), name="shop")
    assert table.party == "ecommerce" and table.source == "shop" and table.n_rows == 4
    assert list(table.frame.columns) == [
        "key",
        "spend",
        "visits",
        "member",
        "city",
        "zip",
        "label",
        "is_existing_customer",
    ]
    assert table.numeric_columns == ("spend", "visits", "member")
    assert table.categorical_columns == ("city", "zip")
    assert table.feature_columns == ("spend", "visits", "member", "city", "zip")
    keys = table.keys()
    assert keys.dtype.kind == "U" and keys.tolist() == ["0012", "0034", "a9", "0001"]
    numeric = table.numeric_matrix()
    assert numeric.dtype == np.float32 and numeric.shape == (4, 3)
    np.testing.assert_array_equal(numeric[:, 2], [1, 0, 1, 0])
    categorical = table.categorical_matrix()
    assert categorical.dtype.kind == "U" and categorical.shape == (4, 2)
    assert categorical[2, 0] == MISSING_CATEGORY and categorical[0, 1] == "0750"
    labels = table.labels()
    assert labels.dtype == np.float32 and labels.tolist() == [0, 1, 1, 0]
    flags = table.existing_flags()
    assert flags.dtype == np.int8 and flags.tolist() == [1, 0, 0, 1]


def test_rows_select_and_order() -> None:
    table = load_ecom(ecommerce_frame())
    rows = np.array([3, 0], dtype=np.int64)
    assert table.labels(rows).tolist() == [0, 0]
    assert table.numeric_matrix(rows)[:, 1].tolist() == [4, 1]
    assert table.categorical_matrix(rows)[:, 1].tolist() == ["1300", "0750"]
    assert table.existing_flags(rows).tolist() == [1, 1]
    with pytest.raises(InputError, match="out of range"):
        table.labels(np.array([4]))
    with pytest.raises(InputError, match="integer"):
        table.labels(np.array([0.5]))


def test_returned_arrays_are_copies() -> None:
    table = load_ecom(ecommerce_frame())
    table.numeric_matrix()[:] = 99
    table.keys()[:] = "x"
    assert table.numeric_matrix()[0, 0] == 1.5
    assert table.keys()[0] == "0012"


def test_social_has_no_labels() -> None:
    table = load_party_table(social_frame(), party="social", key="key")
    assert table.label_column is None and table.existing_column is None
    with pytest.raises(InputError, match="label"):
        table.labels()
    with pytest.raises(InputError, match="existing"):
        table.existing_flags()


def test_round_trip_csv_parquet_dataframe_equal(tmp_path: Path) -> None:
    frame = ecommerce_frame()
    csv = write_csv(tmp_path, frame)
    parquet = tmp_path / "t.parquet"
    frame.to_parquet(parquet, index=False)
    from_frame = load_ecom(frame)
    from_csv = load_ecom(csv)
    from_parquet = load_ecom(parquet)
    assert from_csv.source == str(csv) and from_parquet.source == str(parquet)
    assert from_frame.equals(from_csv) and from_frame.equals(from_parquet)
    pd.testing.assert_frame_equal(from_frame.frame, from_csv.frame)
    pd.testing.assert_frame_equal(from_frame.frame, from_parquet.frame)
    for method in ("keys", "numeric_matrix", "categorical_matrix", "labels", "existing_flags"):
        np.testing.assert_array_equal(getattr(from_csv, method)(), getattr(from_frame, method)())
    assert not from_frame.equals(load_party_table(social_frame(), party="social", key="key"))


def test_leading_zero_keys_and_categories_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "social.csv"
    path.write_text("key,likes,zip\n0012,1,007\n12,2,070\n00012,3,700\n")
    table = load_party_table(path, party="social", key="key", categorical=["zip"])
    assert table.keys().tolist() == ["0012", "12", "00012"]  # all distinct, none turned into 12
    assert table.categorical_matrix()[:, 0].tolist() == ["007", "070", "700"]


def test_declared_types_override_inference() -> None:
    frame = social_frame().assign(code=[1.0, 2.0, np.nan], score=pd.array([1, None, 3], "Int64"))
    table = load_party_table(frame, party="social", key="key", categorical=["code"])
    assert "code" in table.categorical_columns and "score" in table.numeric_columns
    assert table.categorical_matrix()[:, -1].tolist() == ["1", "2", MISSING_CATEGORY]
    assert np.isnan(table.numeric_matrix()[1, -1])


def test_object_columns_infer_by_content() -> None:
    frame = social_frame().assign(
        n=pd.Series([1, None, 2], dtype=object), s=pd.Series(["a", None, "b"], dtype=object)
    )
    table = load_party_table(frame, party="social", key="key")
    assert "n" in table.numeric_columns and "s" in table.categorical_columns


def test_integer_keys_from_dataframe_become_strings() -> None:
    frame = pd.DataFrame({"id": [12, 7], "x": [1.0, 2.0]})
    assert load_party_table(frame, party="social", key="id").keys().tolist() == ["12", "7"]


def test_label_as_text_or_bool_is_accepted() -> None:
    frame = ecommerce_frame().assign(label=["0", "1", "1", "0"], is_existing_customer=[True] * 4)
    table = load_ecom(frame)
    assert table.labels().tolist() == [0, 1, 1, 0] and table.existing_flags().tolist() == [1] * 4


# -- errors: source --------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    expect_error([str(path), "not found"], path, party="social", key="key")


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    path.write_text("x")
    expect_error([str(path), ".xlsx", ".csv", ".parquet"], path, party="social", key="key")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    expect_error([str(path), "empty"], path, party="social", key="key")


def test_whitespace_only_csv(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\n")
    expect_error([str(path), "no header"], path, party="social", key="key")


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_text("this is not parquet")
    expect_error([str(path), "cannot be read as Parquet"], path, party="social", key="key")


def test_unreadable_csv(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"key,x\n\xff\xfe\x00\x81,1\n")
    expect_error([str(path), "UTF-8"], path, party="social", key="key")


def test_header_only_is_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("key,x\n")
    expect_error([str(path), "no rows"], path, party="social", key="key")


def test_empty_dataframe_named() -> None:
    frame = social_frame().iloc[:0]
    expect_error(["my-frame", "no rows"], frame, party="social", key="key", name="my-frame")


def test_unsupported_source_type() -> None:
    expect_error(["<list>", "DataFrame"], [1, 2], party="social", key="key")


# -- errors: key -----------------------------------------------------------------------------


def test_missing_key_column_lists_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path, social_frame())
    expect_error(
        [str(path), "'user_id'", "not found", "'key'", "'likes'", "'region'"],
        path,
        party="social",
        key="user_id",
    )


def test_duplicate_keys(tmp_path: Path) -> None:
    frame = social_frame()
    frame.loc[2, "key"] = "0012"
    path = write_csv(tmp_path, pd.concat([frame, frame.iloc[[1]]]))
    message = expect_error(
        [str(path), "'key'", "2 duplicated keys", "'0012'", "'0099'"],
        path,
        party="social",
        key="key",
    )
    assert "4 rows" in message


@pytest.mark.parametrize("bad", [None, "", "   ", np.nan])
def test_empty_or_missing_keys(bad) -> None:
    frame = social_frame().astype({"key": object})
    frame.loc[1, "key"] = bad
    expect_error(
        ["<DataFrame>", "'key'", "empty or missing", "[2]"], frame, party="social", key="key"
    )


def test_na_like_key_in_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("key,x\n0012,1\n,2\n")
    expect_error([str(path), "'key'", "empty or missing"], path, party="social", key="key")


def test_float_keys_refused() -> None:
    frame = pd.DataFrame({"id": [1.0, 2.0], "x": [1, 2]})
    expect_error(["'id'", "float64", "text"], frame, party="social", key="id")


# -- errors: label and existing --------------------------------------------------------------


def test_social_refuses_label_argument() -> None:
    expect_error(
        ["social", "label='likes'", "e-commerce"],
        social_frame(),
        party="social",
        key="key",
        label="likes",
    )
    expect_error(
        ["social", "existing='likes'", "e-commerce"],
        social_frame(),
        party="social",
        key="key",
        existing="likes",
    )


@pytest.mark.parametrize("column", ["label", "is_existing_customer"])
def test_social_refuses_label_named_columns(tmp_path: Path, column: str) -> None:
    path = write_csv(tmp_path, social_frame().assign(**{column: [0, 1, 0]}))
    expect_error([str(path), column, "e-commerce", "drop"], path, party="social", key="key")


@pytest.mark.parametrize(
    ("arg", "column"), [("label", "label"), ("existing", "is_existing_customer")]
)
def test_ecommerce_undeclared_label_named_column_refused(arg: str, column: str) -> None:
    kwargs = {k: v for k, v in ECOM.items() if k != arg}
    expect_error([column, f"{arg}="], ecommerce_frame(), **kwargs)


@pytest.mark.parametrize(("arg", "missing"), [("label", "converted"), ("existing", "brand_flag")])
def test_declared_label_or_existing_missing(tmp_path: Path, arg: str, missing: str) -> None:
    path = write_csv(tmp_path, ecommerce_frame())
    expect_error([str(path), missing, "not found", "'spend'"], path, **{**ECOM, arg: missing})


def test_non_binary_label_shows_values(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ecommerce_frame().assign(label=[0, 2, 1, 7]))
    expect_error([str(path), "'label'", "not binary", "2", "7"], path, **ECOM)


def test_text_label_shows_values() -> None:
    frame = ecommerce_frame().assign(label=["yes", "no", "yes", "no"])
    expect_error(["'label'", "not binary", "'yes'", "'no'"], frame, **ECOM)


def test_missing_label_values() -> None:
    frame = ecommerce_frame().assign(label=[0, None, 1, 0])
    expect_error(["'label'", "missing", "[2]"], frame, **ECOM)


def test_non_binary_existing(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ecommerce_frame().assign(is_existing_customer=[0, 1, 3, 1]))
    expect_error([str(path), "'is_existing_customer'", "not binary", "3"], path, **ECOM)


def test_same_column_for_two_roles() -> None:
    expect_error(["'label'", "both"], ecommerce_frame(), **{**ECOM, "existing": "label"})


# -- errors: features ------------------------------------------------------------------------


def test_datetime_column_refused() -> None:
    frame = social_frame().assign(seen=pd.to_datetime(["2024-01-01"] * 3))
    expect_error(
        ["'seen'", "datetime64", "convert", "categorical"], frame, party="social", key="key"
    )


def test_datetime_declared_categorical_is_accepted() -> None:
    frame = social_frame().assign(seen=pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-01"]))
    table = load_party_table(frame, party="social", key="key", categorical=["seen"])
    assert "seen" in table.categorical_columns


def test_complex_column_refused() -> None:
    frame = social_frame().assign(z=[1 + 1j, 2j, 3])
    expect_error(["'z'", "complex"], frame, party="social", key="key")


def test_mixed_object_column_refused() -> None:
    frame = social_frame().assign(mixed=pd.Series([1, "a", 2.5], dtype=object))
    expect_error(["'mixed'", "mixed", "declare"], frame, party="social", key="key")


def test_declared_numeric_holding_text(tmp_path: Path) -> None:
    path = write_csv(tmp_path, social_frame())
    expect_error(
        [str(path), "'region'", "declared numeric", "'n'"],
        path,
        party="social",
        key="key",
        numeric=["region"],
    )


def test_declared_column_missing() -> None:
    expect_error(
        ["'nope'", "not found", "'likes'"],
        social_frame(),
        party="social",
        key="key",
        categorical=["nope"],
    )
    expect_error(
        ["'nope'", "not found"], social_frame(), party="social", key="key", numeric=["nope"]
    )


def test_declared_as_string_not_list() -> None:
    expect_error(
        ["categorical='region'", "list"],
        social_frame(),
        party="social",
        key="key",
        categorical="region",
    )


def test_no_feature_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ecommerce_frame()[["key", "label", "is_existing_customer"]])
    expect_error([str(path), "no feature columns"], path, **ECOM)


def test_infinite_values_refused() -> None:
    frame = social_frame().assign(likes=[1.0, np.inf, 2.0])
    expect_error(["'likes'", "infinite"], frame, party="social", key="key")


def test_non_string_column_names() -> None:
    frame = pd.DataFrame({"key": ["a", "b"], 0: [1, 2]})
    expect_error(["not strings"], frame, party="social", key="key")


# -- warnings --------------------------------------------------------------------------------


def test_warns_all_missing_and_constant_columns(tmp_path: Path) -> None:
    frame = social_frame().assign(empty_col=[np.nan] * 3, same_col=[5, 5, 5], same_txt="x")
    path = write_csv(tmp_path, frame)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = load_party_table(path, party="social", key="key")
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(messages) == 2, messages
    missing_msg = next(m for m in messages if "missing" in m)
    constant_msg = next(m for m in messages if "constant" in m)
    assert str(path) in missing_msg and "empty_col" in missing_msg
    assert str(path) in constant_msg and "same_col" in constant_msg and "same_txt" in constant_msg
    assert "empty_col" not in constant_msg
    assert {"empty_col", "same_col", "same_txt"} <= set(table.feature_columns)  # kept
    assert all(w.filename == __file__ for w in caught)  # points at the caller


def test_no_warning_for_clean_table() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        load_ecom(ecommerce_frame())


# -- column roles travel with the table (issue #16) ---------------------------------------------


def test_to_parquet_carries_the_column_roles(tmp_path: Path) -> None:
    frame = ecommerce_frame().rename(columns={"key": "phone_hash", "label": "converted"})
    table = load_party_table(
        frame,
        party="ecommerce",
        key="phone_hash",
        label="converted",
        existing="is_existing_customer",
        categorical=["visits"],
    )
    path = table.to_parquet(tmp_path / "shop.parquet")
    back = load_party_table(path, party="ecommerce")
    assert back.equals(table)
    assert back.column_roles() == table.column_roles()
    assert "visits" in back.categorical_columns
    with pytest.raises(InputError, match="holds the 'ecommerce' party's table"):
        load_party_table(path, party="social")
    with pytest.raises(InputError, match="give key= too"):
        load_party_table(path, party="ecommerce", label="converted")


def test_key_is_required_unless_the_file_carries_roles(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    social_frame().to_parquet(path, index=False)
    with pytest.raises(InputError, match=r"no key column given; give key="):
        load_party_table(path, party="social")
    csv = tmp_path / "s.csv"
    social_frame().to_csv(csv, index=False)
    with pytest.raises(InputError, match="no key column given"):
        load_party_table(csv, party="social")


def test_role_table_column_names_come_from_the_party_side(tmp_path: Path) -> None:
    from fedads.federation import load_role_table

    frame = ecommerce_frame().rename(columns={"key": "phone_hash", "label": "converted"})
    csv = tmp_path / "shop.csv"
    frame.to_csv(csv, index=False)
    node = {
        "ecommerce-key": "phone_hash",
        "ecommerce-label": "converted",
        "ecommerce-existing": "is_existing_customer",
        "ecommerce-categorical": "visits, zip",
    }
    table = load_role_table("ecommerce", csv, node)
    assert table.key == "phone_hash" and table.label_column == "converted"
    assert set(table.categorical_columns) >= {"visits", "zip"}
    with pytest.raises(InputError, match="no 'ecommerce-key'"):
        load_role_table("ecommerce", csv, {"ecommerce-label": "converted"})
    # Shared names of fedads.world when nothing names the columns.
    plain = tmp_path / "plain.csv"
    ecommerce_frame().to_csv(plain, index=False)
    assert load_role_table("ecommerce", plain).label_column == "label"
    # The other party's names are private keys: the factory of 'social' never sees them.
    from fedads.flower.config import party_run_config

    assert "ecommerce-key" not in party_run_config("social", {"ecommerce-key": "k"})


# -- never silent (issue #17): short CSV rows, absurd magnitudes ------------------------------


def test_short_csv_rows_are_an_error_naming_the_count_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("key,likes,region\n0012,3,n\n0099,0\n\na9\n0100,,\n", encoding="utf-8")
    with pytest.raises(
        InputError, match=r"2 rows have fewer fields than the header's 3: rows \[2, 3\]"
    ):
        load_party_table(path, party="social", key="key")
    # Empty fields written out (and blank lines) are fine: missing values, no error.
    path.write_text("key,likes,region\n0012,3,n\n\n0099,,\n", encoding="utf-8")
    table = load_party_table(path, party="social", key="key")
    assert table.n_rows == 2 and np.isnan(table.numeric_matrix()[1, 0])


def test_absurd_magnitudes_warn_naming_the_column() -> None:
    frame = social_frame()
    frame["income"] = [1e13, 5.0, 7.0]
    with pytest.warns(DataWarning, match=r"absurd magnitudes.*'income'") as caught:
        load_party_table(frame, party="social", key="key")
    assert not any("'likes'" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        load_party_table(social_frame(), party="social", key="key")  # ordinary values: silent


def test_magnitudes_beyond_float32_are_an_error(tmp_path: Path) -> None:
    frame = social_frame()
    frame["income"] = [1e308, 5.0, 7.0]
    path = write_csv(tmp_path, frame)
    with pytest.raises(InputError, match=r"'income' has 1 values .*become infinite"):
        load_party_table(path, party="social", key="key")
