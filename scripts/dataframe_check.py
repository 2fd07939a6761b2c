"""The README's pandas and polars one-liners on a real sweep (scripts/dataframe-check)."""

import sqlite3
import sys

import pandas as pd
import polars as pl

db, exported = sys.argv[1], sys.argv[2]

# The one-liners, as README.md has them.
frame = pd.read_sql("select * from trials_wide", sqlite3.connect(db))
polars_frame = pl.read_database("select * from trials_wide", sqlite3.connect(db))

csv = pd.read_csv(exported)
assert list(frame.columns) == list(csv.columns), (list(frame.columns), list(csv.columns))
assert len(frame) == len(csv) == 20, (len(frame), len(csv))
# A column that is empty in every row reads as floats from CSV and as None from SQL.
frame = frame.astype(object).where(frame.notna(), None)
csv = csv.astype(object).where(csv.notna(), None)
pd.testing.assert_frame_equal(frame, csv, check_dtype=False)
assert polars_frame.columns == list(frame.columns), polars_frame.columns
assert polars_frame.height == 20
assert polars_frame["metric_loss"].to_list() == csv["metric_loss"].to_list()
print(f"trials_wide: {len(frame)} trials x {len(frame.columns)} columns, equal to the export")
