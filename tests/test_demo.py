"""`make demo`'s program, small: generate, ingest and bill through a real Dagster instance, twice, same numbers."""

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb


def run_demo(tmp: Path, landing: Path) -> str:
    home = tmp / "dagster_home"
    home.mkdir(parents=True)
    env = {**os.environ, "TALLY_LANDING_DIR": str(landing), "TALLY_WAREHOUSE_PATH": str(tmp / "warehouse.duckdb"),
           "DAGSTER_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "pipelines.demo", "--customers", "120", "--months", "2"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def summary(out: str) -> str:
    return out[out.index("Bill cycle summary"):out.index("Open the UI")]


def test_demo_prints_the_same_summary_twice_from_scratch(tmp_path):
    first = run_demo(tmp_path / "a", tmp_path / "a" / "landing")
    second = run_demo(tmp_path / "b", tmp_path / "b" / "landing")
    assert summary(first) == summary(second)
    assert re.search(r"^2025-01\s+USD\s+\d+\s+[\d,]+\.\d\d", first, re.M), first
    assert re.search(r"^2025-02\s+\d+\s+\d+$", first, re.M)  # quarantined / unrated per month
    assert "make ui" in first and "warehouse.snapshot.duckdb" in first
    # the analysts' snapshot opens read-only while nothing else holds it
    with duckdb.connect(str(tmp_path / "a" / "warehouse.snapshot.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM billing.invoices").fetchone()[0] > 0


def test_demo_rerun_on_the_same_data_changes_nothing(tmp_path):
    first = run_demo(tmp_path / "a", tmp_path / "landing")
    (tmp_path / "a" / "dagster_home").rename(tmp_path / "a" / "dagster_home_1")
    second = run_demo(tmp_path / "a", tmp_path / "landing")  # same warehouse, same landing zone
    assert "Using the landing zone" in second
    assert summary(first) == summary(second)
