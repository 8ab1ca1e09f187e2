"""Issue 25 point 2: one vocabulary across verbs. --cache all; --preset case-insensitive and
completed on replay as on compare; --kernel on save, restore, roundtrip and inspect."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gictools.cli import app
from gictools.cli.options import CACHE_POLICIES, cache_names

runner = CliRunner()
T4 = str(Path(__file__).parent.parent.parent / "traces" / "lpi-stress-v4-d4-e8-fixed.msgpack")


def test_cache_choices_are_the_policy_registry():
    from gictools.model.cache import policy_names

    assert policy_names() == CACHE_POLICIES
    assert cache_names(["all"]) == list(policy_names())
    assert cache_names(["usage-v2", "all"]) == ["usage-v2"] + [
        n for n in policy_names() if n != "usage-v2"
    ]
    assert cache_names(None) is None


def test_replay_cache_all_runs_every_policy():
    r = runner.invoke(app, ["replay", T4, "--cache", "ALL", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [rep["policy"] for rep in doc["reports"]] == list(CACHE_POLICIES)


def test_sweep_cache_all(tmp_path):
    r = runner.invoke(
        app, ["sweep", "-t", T4, "--cache", "all", "-o", str(tmp_path / "d"), "-j", "1"]
    )
    assert r.exit_code == 0, r.output
    parts = {p.name for p in (tmp_path / "d" / "cells").glob("*/*/*") if p.is_dir()}
    parts |= {p.name for p in (tmp_path / "d" / "cells").rglob("policy=*")}
    assert {f"policy={n}" for n in CACHE_POLICIES} <= parts


@pytest.mark.parametrize("given", ["v6.10", "V6.10", "Series-V2"])
def test_replay_preset_case_insensitive(given):
    r = runner.invoke(app, ["replay", T4, "--json", "--preset", given])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["latency_preset"] == given.lower()


def test_replay_preset_refused_in_one_line():
    r = runner.invoke(app, ["replay", T4, "--preset", "v9.9"])
    assert r.exit_code == 2
    assert r.stderr.startswith("gictools: error: --preset: 'v9.9' is not one of ")
    assert len(r.stderr.splitlines()) == 1


def _complete(words: str) -> list[str]:
    env = {
        "_GICTOOLS_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    r = runner.invoke(app, [], prog_name="gictools", env=env)
    return r.output.split()


def test_preset_completed_on_replay_as_on_compare():
    from gictools.latency.presets import DEFAULT_PRESET as FIXED_PRESET

    assert _complete("gictools replay t --preset v6") == ["v6.10", "v6.8-rc1"]
    assert _complete("gictools compare t --preset v6") == ["v6.10", "v6.8-rc1"]
    assert FIXED_PRESET in _complete("gictools replay t --preset ")


@pytest.mark.parametrize("verb", ["save", "restore", "roundtrip", "inspect"])
def test_kernel_on_image_verbs(verb, tmp_path):
    r = runner.invoke(app, [verb, "--help"], env={"COLUMNS": "200"})
    assert "--kernel" in r.output
    r = runner.invoke(app, [verb, "x", "--kernel", "banana"])
    assert r.exit_code == 2 and "--kernel" in r.stderr


def test_kernel_chooses_the_modelled_version(tmp_path):
    img = tmp_path / "t.img"
    r = runner.invoke(app, ["save", T4, "-o", str(img), "--kernel", "6.1", "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["restore", str(img)])
    assert r.exit_code == 0 and "kernel 6.1" in r.stdout
    r = runner.invoke(app, ["restore", str(img), "--kernel", "6.13"])
    assert r.exit_code == 0 and "kernel 6.13" in r.stdout and "kernel 6.1," not in r.stdout
    r = runner.invoke(app, ["inspect", str(img), "--kernel", "6.10"])
    assert r.exit_code == 0 and "kernel 6.10" in r.stdout
    r = runner.invoke(app, ["roundtrip", str(img), "--kernel", "6.10"])
    assert r.exit_code == 0, r.output
