"""Every file bertlab writes or reads: model folders, training checkpoints, and the atomic write.

A **model folder** is what Hugging Face ``save_pretrained`` writes: ``config.json`` beside
``model.safetensors``. Both libraries read each other's. A **run folder** holds a training run's
checkpoints: ``step-NNNNNN/`` folders (a model folder plus ``training_state.pt``) and an index,
``checkpoints.json``, that names the last and the best one.

Two rules keep a learner's work safe:

* every file is written by :func:`atomic_write`: to a temporary name beside it, flushed to disk,
  then renamed into place. A crash leaves the old file or the new one, never half of one;
* weights are read from safetensors only (raw tensors: opening one runs no code), and training
  state with ``torch.load(weights_only=True)``. Nothing is ever unpickled.

    write_model(model, "out/")                      # config.json + model.safetensors
    tensors = read_weights("out/model.safetensors")
    save_checkpoint("runs/a", model, step=100, training_state=state)
    load_checkpoint("runs/a", model, which="best")

torch is imported inside the functions that need it, so ``python -m bertlab.data fetch`` (which
writes the data cache through :func:`atomic_write`) runs before torch is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_NAME", "INDEX_NAME", "STATE_NAME", "WEIGHTS_NAME", "CheckpointError",
           "atomic_write", "list_checkpoints", "load_checkpoint", "load_training_state",
           "read_index", "read_json", "read_pretrained", "read_weights", "save_checkpoint",
           "write_json", "write_model", "write_weights"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "checkpoints.json"  # names the last and the best checkpoint folder of a run
STATE_NAME = "training_state.pt"  # tensors and plain values only: loaded with weights_only=True


class CheckpointError(ValueError):
    """A model folder is missing, unreadable, unsafe to open, or does not fit the model."""


# =========================================================================== the atomic write


def atomic_write(path: str | os.PathLike, content: bytes | str | Callable[[Path], None]) -> Path:
    """Write ``path`` so that a reader sees the old content or the new one, never a mixture.

    ``content`` is bytes, text (UTF-8), or a function that writes a given path (for writers
    such as safetensors' ``save_file`` that stream to a file). It goes to a hidden temporary
    name in the same folder (so the rename is atomic), is flushed to disk, and renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path.parent, path.name)
    try:
        if callable(content):
            content(tmp)
        else:
            tmp.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        tmp.chmod(0o644)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)
    return path


def write_json(path: str | os.PathLike, value: Any, *, indent: int | None = 2) -> Path:
    """``value`` as JSON, written atomically (``indent=None``: one compact line)."""
    separators = (",", ":") if indent is None else None
    text = json.dumps(value, indent=indent, ensure_ascii=False, separators=separators)
    return atomic_write(path, text + ("\n" if indent is not None else ""))


def read_json(path: str | os.PathLike) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable (a cache then rebuilds)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _temporary_name(folder: Path, name: str) -> Path:
    """A fresh hidden name beside ``name``: on the same file system, so renaming is atomic."""
    return folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk (a folder: so that a rename inside it is durable)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open a folder; its renames are atomic all the same
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder
    finally:
        os.close(fd)


# =========================================================================== weights


def write_weights(model, folder: str | os.PathLike) -> Path:
    """``folder/model.safetensors``: every tensor of ``model.state_dict()``, tied ones once.

    A tied weight (the MLM decoder *is* the word-embedding matrix) appears under two names in
    the state dict; it is stored under the first, as ``transformers`` does.
    """
    tensors, seen = {}, set()
    for name, tensor in _unwrap(model).state_dict().items():
        if _storage_key(tensor) in seen:
            continue
        seen.add(_storage_key(tensor))
        tensors[name] = tensor
    return write_tensors(Path(folder) / WEIGHTS_NAME, tensors, {})


def read_weights(path: str | os.PathLike) -> dict:
    """The tensors of a safetensors file, by name (raw tensors only: nothing is executed)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        directory = path.parent
        if (directory / "pytorch_model.bin").is_file():
            raise CheckpointError(
                f"{directory} holds only pytorch_model.bin, a pickle file; bertlab reads "
                "safetensors only, because opening a pickle can run arbitrary code. If you "
                "trust its source, convert it once: python -c \"import torch; from "
                "safetensors.torch import save_file; d = '" + str(directory) + "'; "
                "sd = torch.load(d + '/pytorch_model.bin', weights_only=True); "
                "save_file({k: v.clone().contiguous() for k, v in sd.items()}, "
                "d + '/model.safetensors', metadata={'format': 'pt'})\""
            )
        raise CheckpointError(
            f"No {WEIGHTS_NAME} in {directory}. Save the model with save_pretrained(), which "
            f"writes {CONFIG_NAME} and {WEIGHTS_NAME} side by side."
        )
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"Could not read {path}: {err}. The file is damaged or not a safetensors file. "
            "Save the model again, or fetch the checkpoint again (for the course's MiniLM: "
            "python -m bertlab.data fetch minilm)."
        ) from err


def write_tensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str]) -> Path:
    """A safetensors file of named tensors with string ``metadata``, written atomically."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt",
                                                                             **metadata}))


def read_tensors(path: str | os.PathLike) -> tuple[dict, dict[str, str]]:
    """The tensors and the metadata of a safetensors file (raw tensors only: nothing runs)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as file:
            return {name: file.get_tensor(name) for name in file.keys()}, file.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"could not read {path}: {err}; the file is damaged or not a "
                              "safetensors file: write it again") from err


def write_model(model, folder: str | os.PathLike) -> Path:
    """A model folder: ``config.json`` (when the model has a config) and ``model.safetensors``."""
    if any(".lora_A." in key for key in _unwrap(model).state_dict()):
        raise CheckpointError(
            "this model holds LoRA layers, which a model folder cannot describe: fold them into "
            "its weights with bertlab.merge_lora(model) first, or save the adapter alone with "
            "bertlab.save_lora(model, folder)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = getattr(_unwrap(model), "config", None)
    if hasattr(config, "save"):  # bertlab.BertConfig, in the transformers format
        config.save(folder, architectures=[type(_unwrap(model)).__name__])
    elif hasattr(config, "to_json_string"):  # a transformers config
        atomic_write(folder / CONFIG_NAME, config.to_json_string())
    write_weights(model, folder)
    return folder


def _storage_key(tensor) -> tuple:
    """Equal for tied weights (one tensor under two names), distinct otherwise."""
    if tensor.numel() == 0:
        return (id(tensor),)
    return (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))


def _unwrap(model):
    return getattr(model, "_orig_mod", model)  # torch.compile wraps the module


# =========================================================================== model folders


def read_pretrained(cls, name_or_path: str | os.PathLike, overrides: dict[str, Any]):
    """Build ``cls`` from a model folder; return ``(model, loading_info)``.

    See :meth:`bertlab.model.BertPreTrainedModel.from_pretrained` for what fits.
    """
    directory = _locate(name_or_path)
    config = _read_config(directory, overrides)
    state = read_weights(directory / WEIGHTS_NAME)
    model = cls(config)
    info = _load_into(model, state, directory / WEIGHTS_NAME)
    model.eval()
    return model, info


def _locate(name_or_path: str | os.PathLike) -> Path:
    """A local folder as is; otherwise a hub name (``bert-base-uncased``, ``org/model``) is
    fetched from the Hugging Face hub, when online. Anything else is returned for the
    "no folder" error to name."""
    path = Path(name_or_path).expanduser()
    name = str(name_or_path)
    if path.exists() or not re.fullmatch(r"[\w-][\w.-]*(/[\w.-]+)?", name):
        return path
    from huggingface_hub import snapshot_download  # only for hub names

    try:
        return Path(snapshot_download(name, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
    except Exception as err:  # offline, no such repository, network trouble, ...
        raise CheckpointError(
            f"No checkpoint folder at {path}, and {name!r} could not be fetched from the "
            f"Hugging Face hub ({type(err).__name__}). Pass the folder that save_pretrained() "
            f"wrote (it holds {CONFIG_NAME} and {WEIGHTS_NAME}), or go online to use a hub name."
        ) from err


def _read_config(directory: Path, overrides: dict[str, Any]):
    from bertlab.config import BertConfig

    if not directory.is_dir():
        raise CheckpointError(
            f"No checkpoint folder at {directory}. Pass the folder that save_pretrained() "
            f"wrote (bertlab or transformers): it holds {CONFIG_NAME} and {WEIGHTS_NAME}."
        )
    if not (directory / CONFIG_NAME).is_file():
        raise CheckpointError(
            f"{directory} has no {CONFIG_NAME}, so the model's sizes are unknown. Save the "
            "checkpoint with save_pretrained(), or write the config with BertConfig.save()."
        )
    config = BertConfig.load(directory)
    if overrides:
        values = config.to_dict()
        if "num_labels" in overrides and "id2label" not in overrides:
            values["id2label"] = None  # the old class names no longer fit
        config = BertConfig.from_dict({**values, **overrides})
    return config


def _load_into(model, state: dict, path: Path) -> dict[str, list[str]]:
    """Copy a checkpoint's tensors into a bertlab model, forgiving only what may differ: the
    ``bert.`` prefix, a head or pooler the checkpoint lacks, heads the model lacks."""
    import torch

    own = model.state_dict()
    state = _fit_prefix(state, model_has_prefix=any(k.startswith("bert.") for k in own))
    for alias, source in model.tied_weights.items():  # stored once; loading fills both
        if alias in state and source in state and not torch.equal(state[alias], state[source]):
            raise CheckpointError(
                f"{path} stores {alias} apart from {source} (an untied decoder); bertlab "
                "always ties the MLM decoder to the word embeddings and cannot load it."
            )
        state.pop(alias, None)

    missing = [k for k in own if k not in state and k not in model.tied_weights]
    unexpected = [k for k in state if k not in own]
    serious_missing = [k for k in missing if not model.may_start_fresh(k)]
    serious_unexpected = [k for k in unexpected if not model.may_leave_out(k)]
    if serious_missing or serious_unexpected:
        raise CheckpointError(
            f"{path} does not fit {type(model).__name__} as configured by its config.json: "
            + _name_keys("missing from the checkpoint", serious_missing)
            + _name_keys("in the checkpoint but not in the model", serious_unexpected)
            + "Check that config.json belongs to these weights (number of layers, names)."
        )
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own if k in state and state[k].shape != own[k].shape
    ]
    if mismatched:
        raise CheckpointError(
            f"{path} has weights of another shape than {type(model).__name__}: "
            + "; ".join(mismatched[:10])
            + ". Use the checkpoint's own config (for a classifier, its num_labels)."
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return {"missing_keys": missing, "unexpected_keys": unexpected}


def _fit_prefix(state: dict, model_has_prefix: bool) -> dict:
    """Match the checkpoint's key names to the model's.

    A model with a head keeps the encoder under ``bert.``; a bare ``BertModel`` (like MiniLM)
    does not. Old checkpoints also carry the position-id buffers (not weights) and call the
    LayerNorm parameters ``gamma``/``beta``.
    """
    renamed = {}
    for key, tensor in state.items():
        if key.endswith(("embeddings.position_ids", "embeddings.token_type_ids")):
            continue  # buffers of transformers' implementation, not weights
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight")
        renamed[key.replace("LayerNorm.beta", "LayerNorm.bias")] = tensor

    file_has_prefix = any(key.startswith("bert.") for key in renamed)
    if model_has_prefix and not file_has_prefix:  # a bare encoder under a head
        return {f"bert.{key}": tensor for key, tensor in renamed.items()}
    if file_has_prefix and not model_has_prefix:  # a model with heads into a bare encoder
        return {key.removeprefix("bert."): tensor for key, tensor in renamed.items()}
    return renamed


def _name_keys(what: str, keys: list[str]) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
    return f"{len(keys)} weight(s) {what}: {shown}. "


# =========================================================================== training checkpoints

_TEMPORARY = re.compile(r"\.(step-\d{6,}|checkpoints\.json)\.[0-9a-f]{8}\.tmp")


def save_checkpoint(
    run_dir: str | Path,
    model,
    *,
    step: int,
    training_state: dict | None = None,
    best: bool = False,
    metric: float | None = None,
    keep: int | None = 1,
) -> Path:
    """Save ``model`` (and optionally the training state) as ``run_dir/step-NNNNNN``, atomically.

    Files go to a temporary folder first, are fsynced, and the folder is renamed into place; then
    the index ``checkpoints.json`` is replaced atomically to name it the last (and, with
    ``best=True``, the best) checkpoint. Older folders beyond the ``keep`` most recent are removed,
    except the best. Returns the checkpoint folder.
    """
    import io

    import torch

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_finite(model, step)
    index = read_index(run_dir) or {"last": None, "best": None, "best_metric": None, "saved": []}
    kept_before = list(index["saved"])
    name = f"step-{step:06d}"
    final = run_dir / name
    if name not in index["saved"]:
        tmp = _temporary_name(run_dir, name)
        try:
            tmp.mkdir()
            write_model(model, tmp)
            if training_state is not None:
                buffer = io.BytesIO()
                torch.save(training_state, buffer)
                atomic_write(tmp / STATE_NAME, buffer.getvalue())
            if final.exists():  # left over by a crash before its index update: never valid
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync(run_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        index["saved"].append(name)
    index["last"] = name
    if best:
        index["best"], index["best_metric"] = name, metric
    recent = index["saved"] if keep is None else index["saved"][-keep:]
    index["saved"] = [s for s in index["saved"] if s in recent or s == index["best"]]
    write_json(run_dir / INDEX_NAME, index)
    # Only now, with the new index in place, is anything old removed: checkpoints dropped from
    # the index, and temporaries a crash left behind. Other folders (snapshots a callback saved
    # beside the checkpoints, say) are never touched.
    dropped = set(kept_before) - set(index["saved"])
    for path in run_dir.iterdir():
        if _TEMPORARY.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
        elif path.is_dir() and (_TEMPORARY.fullmatch(path.name) or path.name in dropped):
            shutil.rmtree(path, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path, model, *, which: str = "last") -> dict:
    """Load a checkpoint's weights into ``model``; return where it came from and its step.

    ``path`` is a run folder (``which`` picks its ``"last"`` or ``"best"`` checkpoint) or one
    checkpoint folder. Shapes are checked: a checkpoint of another model size gives a
    ``ValueError`` naming both shapes.
    """
    folder = checkpoint_folder(path, which)
    load_weights(model, folder)
    state = load_training_state(folder)
    info = {"path": folder, "step": int(folder.name.split("-")[-1])}
    if state is not None and "progress" in state:
        info |= {"epoch": state["progress"]["epoch"],
                 "best_metric": state["progress"]["best_metric"]}
    return info


def list_checkpoints(run_dir: str | Path):
    """The checkpoints a run kept, as a ``DataFrame``: folder, step, and last / best."""
    import pandas as pd

    index = read_index(Path(run_dir))
    if index is None:
        raise FileNotFoundError(f"{run_dir} holds no {INDEX_NAME}: not a training run folder")
    rows = [{"step": int(name.split("-")[-1]), "path": Path(run_dir) / name,
             "last": name == index["last"], "best": name == index["best"]}
            for name in index["saved"]]
    return pd.DataFrame(rows, columns=["step", "path", "last", "best"])


def read_index(run_dir: str | Path) -> dict | None:
    """A run folder's ``checkpoints.json``, or None when it has none yet."""
    path = Path(run_dir) / INDEX_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it names the run's checkpoints "
                         "and is only ever replaced whole, so it was edited or damaged") from error


def checkpoint_folder(path: str | Path, which: str = "last") -> Path:
    """The checkpoint folder ``path`` means: itself, or its run's last or best checkpoint."""
    path = Path(path)
    if (path / WEIGHTS_NAME).exists():
        return path
    index = read_index(path) if path.is_dir() else None
    if index is None:
        raise FileNotFoundError(
            f"no checkpoint at {path}: expected a run folder with {INDEX_NAME} or a checkpoint "
            f"folder with {WEIGHTS_NAME}"
        )
    if which not in ("last", "best"):
        raise ValueError(f"which must be 'last' or 'best', got {which!r}")
    if index.get(which) is None:
        raise FileNotFoundError(f"the run in {path} has no {which!r} checkpoint yet")
    return path / index[which]


def load_weights(model, folder: Path) -> None:
    """Load a checkpoint folder's weights into ``model``, which must match them exactly."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {folder} is not a complete checkpoint")
    tensors = read_weights(path)
    expected = _unwrap(model).state_dict()
    wrong_shape = [(k, tuple(tensors[k].shape), tuple(v.shape))
                   for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    if wrong_shape:
        name, saved, wanted = wrong_shape[0]
        raise ValueError(
            f"checkpoint {path} does not fit this model: {name!r} has shape {saved} in the "
            f"checkpoint but {wanted} in the model ({len(wrong_shape)} tensor(s) differ). It comes "
            "from another model size or vocabulary; build the model with the checkpoint's "
            "config (config.json beside it) or train a new run in another folder"
        )
    owner = {}  # tied weights are stored once, under the first of their names
    for key, value in expected.items():
        owner.setdefault(_storage_key(value), key)
    for key, value in expected.items():
        alias = owner[_storage_key(value)]
        if key not in tensors and alias in tensors:
            tensors[key] = tensors[alias]
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not fit this model: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}; it was saved from a different model class"
        )
    _unwrap(model).load_state_dict(tensors)


def load_training_state(folder: Path) -> dict | None:
    """The optimizer, schedule, random and data state saved beside a checkpoint's weights."""
    import torch

    path = Path(folder) / STATE_NAME
    if not path.exists():
        return None
    # weights_only: tensors and plain Python values, nothing that can run code when loaded
    return torch.load(path, map_location="cpu", weights_only=True)


def _check_finite(model, step: int) -> None:
    import torch

    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise FloatingPointError(
            f"refusing to save the checkpoint of step {step}: parameters {bad[:3]} hold NaN or "
            "inf values; the previous checkpoint is left as it was"
        )
