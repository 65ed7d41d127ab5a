"""The mining history: which pool rows were already mined or are already in training.

Persisted as JSON (`history_file`), identity = the normalized `filepath` key
(first light's test image, workspace-root coordinates). The loop adds rows only
after the stage that used them is committed, and saves atomically.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import pandas as pd

from deftpipe.errors import ContractError
from deftpipe.mining.layout import filepath_keys, norm_path
from deftpipe.workspace.io import write_json_atomic

HistoryKind = Literal["mined", "training"]
_KINDS: tuple[str, ...] = ("mined", "training")
FORMAT = "deftpipe/mining_history/1"


_SLASHES = re.compile(r"/{2,}")
_DOT_SLASH = re.compile(r"^(\./)+")


def normalize_key(key: str) -> str:
    """Same rule as `layout.norm_path`, for one string."""
    out = _DOT_SLASH.sub("", _SLASHES.sub("/", str(key).replace("\\", "/")))
    return _SLASHES.sub("/", out.strip("/"))


class MiningHistory:
    """Filepath keys with the kind (`mined` | `training`) and iteration that added them.

    Example:
        history = MiningHistory.load(run_dir / "mining_history.json")
        history.add_rows(result.mined, kind="mined", iter_label="iter1", first_light="LightA", image_ext=".png")
        history.save()
    """

    def __init__(self, path: Path | None = None, entries: dict[str, dict[str, str]] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, dict[str, str]] = dict(entries or {})

    @classmethod
    def load(cls, path: Path | str | None) -> MiningHistory:
        """Read `path`; an absent file (or None) is an empty history."""
        if path is None:
            return cls()
        path = Path(path)
        if not path.exists():
            return cls(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, json.JSONDecodeError) as exc:
            raise ContractError(
                f"{path}: mining history is not valid JSON ({exc}); restore it from the run or delete it to start "
                "a fresh history (already-mined rows may then be mined again)."
            ) from exc
        entries = raw.get("entries", {}) if isinstance(raw, dict) else None
        if not isinstance(entries, dict) or any(
            not isinstance(v, dict) or v.get("kind") not in _KINDS for v in entries.values()
        ):
            raise ContractError(
                f"{path}: mining history must be an object with 'entries' mapping filepath -> "
                f"{{kind: {'|'.join(_KINDS)}, iter: ...}}; fix or delete the file."
            )
        return cls(path, {normalize_key(k): dict(v) for k, v in entries.items()})

    def contains(self, key: str) -> bool:
        return normalize_key(key) in self._entries

    def kind_of(self, key: str) -> str | None:
        entry = self._entries.get(key)
        return entry["kind"] if entry else None

    def kinds(self, keys: pd.Series) -> pd.Series:
        """Per (already normalized) key: 'mined', 'training' or None."""
        return keys.map(lambda k: (self._entries.get(k) or {}).get("kind"))

    def add(self, keys: Iterable[str], *, kind: HistoryKind, iter_label: str) -> int:
        """Record keys; an existing entry keeps its first kind. Returns the number of new keys."""
        if kind not in _KINDS:
            raise ValueError(f"history kind must be one of {_KINDS}, got {kind!r}")
        added = 0
        normalized = norm_path(keys) if isinstance(keys, pd.Series) else map(normalize_key, keys)
        for k in normalized:
            if k not in self._entries:
                self._entries[k] = {"kind": kind, "iter": iter_label}
                added += 1
        return added

    def add_rows(self, rows: pd.DataFrame, *, kind: HistoryKind, iter_label: str, first_light: str,
                 image_ext: str, prefix: str = "") -> int:
        """Record sample rows; `prefix` moves their paths into workspace-root coordinates (e.g. 'images/')."""
        if len(rows) == 0:
            return 0
        return self.add(filepath_keys(rows, first_light=first_light, image_ext=image_ext, prefix=prefix),
                        kind=kind, iter_label=iter_label)

    def save(self, path: Path | str | None = None) -> Path:
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("MiningHistory.save needs a path (none given at load time)")
        counts = {k: sum(1 for v in self._entries.values() if v["kind"] == k) for k in _KINDS}
        write_json_atomic(target, {"format": FORMAT, "identity": "filepath", "counts": counts,
                                   "entries": dict(sorted(self._entries.items()))})
        self.path = target
        return target

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.contains(key)
