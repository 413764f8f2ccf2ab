"""The feature cache: feature frames stored as Parquet under the workspace, keyed by a fingerprint.

Building features is the most expensive step of a weekly run and the one most often repeated with
the same inputs (re-running a week, a retry after a later step failed, `notalone demo` twice). The
key is a hash of everything the frame depends on: the source files (names, sizes, modification
times), the config sections the feature builder reads, the as-of time and the feature code itself.
Change any of them and the key changes; nothing is ever invalidated by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from configs.schema import Config
from features.sources import SOURCE_INFO_FILE, atomic_file, locate_tables
from pipelines.locks import pid_alive
from pipelines.settings import Workspace

# The config sections `features.build` reads; other sections (scoring, model...) do not change
# the frame, so they stay out of the key and a scoring-only change still reuses the cache.
FEATURE_CONFIG_SECTIONS = ("snapshots", "features")
# Partitioned datasets (folders of parts written by a cluster) live beside the frames.
DATASET_PREFIX = "dataset-"
# Modules whose code shapes the frame: editing them must invalidate cached frames.
FEATURE_CODE_MODULES = (
    "features.build",
    "features.catalog",
    "features.contract",
    "features.deadlines",
    "features.sources",
)


def source_files(source: str | Path) -> list[Path]:
    """Every file that holds a contract table of `source`, and its `source.yaml` (exported_at
    changes labels), in a stable order."""
    files: list[Path] = []
    for _name, table in sorted(locate_tables(source).items()):
        if table.fmt == "parquet_dir":
            files.extend(sorted(table.path.glob("*.parquet")))
        elif table.fmt == "parquet_hive":
            files.extend(sorted(table.path.glob("*=*/*.parquet")))
        else:
            files.append(table.path)
    info = Path(source) / SOURCE_INFO_FILE
    if info.is_file():
        files.append(info)
    return files


def source_fingerprint(source: str | Path) -> str:
    """Hash of the source's table files (relative name, size, modification time in ns).

    Sizes and mtimes, not contents: hashing gigabytes of events on every run would cost more than
    the cache saves, and every writer in this project replaces files (new mtime) rather than
    editing them in place.
    """
    root = Path(source).resolve()
    digest = hashlib.sha256(str(root).encode())
    for path in source_files(root):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def code_fingerprint(modules: tuple[str, ...] = FEATURE_CODE_MODULES) -> str:
    """Hash of the source code of `modules` (editing them invalidates what they produced)."""
    import importlib

    digest = hashlib.sha256()
    for module_name in modules:
        module = importlib.import_module(module_name)
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def _as_of_key(as_of) -> str:
    """All weekly snapshots, one as-of time, or a range of calendar weeks (`CalendarWeeks`)."""
    if as_of is None:
        return "all"
    return as_of.key() if hasattr(as_of, "key") else as_of.isoformat()


def feature_key(source: str | Path, config: Config, as_of: datetime | None) -> str:
    """The cache key of the feature frame of `source` at `as_of` (None = all weekly snapshots)."""
    payload = {
        "source": source_fingerprint(source),
        "config": {s: getattr(config, s).model_dump(mode="json") for s in FEATURE_CONFIG_SECTIONS},
        "as_of": _as_of_key(as_of),
        "code": code_fingerprint(),
    }
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class FeatureCache:
    """Parquet files `<root>/<key>.parquet`; the newest `keep` entries survive a `prune`."""

    root: Path
    keep: int

    def path(self, key: str) -> Path:
        return self.root / f"{key}.parquet"

    def get(self, key: str) -> pd.DataFrame | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError):
            # A damaged entry (disk full, foreign file) is a miss, never an error: rebuild it.
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # recently used entries survive pruning
        return frame

    def put(self, key: str, frame: pd.DataFrame) -> Path:
        """Write atomically (temporary file, then rename) so a reader never sees half a file."""
        path = self.path(key)
        with atomic_file(path) as tmp:
            frame.to_parquet(tmp, index=False)
        self.prune()
        return path

    def get_file(self, key: str, out: Path) -> bool:
        """Copy the cached file of `key` to `out` atomically; False when there is none."""
        path = self.path(key)
        if not path.is_file():
            return False
        with atomic_file(out) as tmp:
            shutil.copyfile(path, tmp)
        os.utime(path)
        return True

    def put_file(self, key: str, file: Path) -> Path:
        """Store a copy of a written feature file under `key` (a hard link when possible)."""
        path = self.path(key)
        with atomic_file(path) as tmp:
            try:
                os.link(file, tmp)
            except OSError:  # another file system, or links not allowed: copy
                shutil.copyfile(file, tmp)
        self.prune()
        return path

    def dataset(self, key: str) -> Path:
        """The folder of a partitioned feature dataset (built by a cluster's workers)."""
        return self.root / f"{DATASET_PREFIX}{key}"

    def touch_dataset(self, key: str) -> None:
        """Mark a dataset as used now (it survives pruning) and prune the others."""
        folder = self.dataset(key)
        if folder.is_dir():
            os.utime(folder)
        self.prune()

    def prune(self) -> None:
        """Keep the `keep` most recently used entries (files and datasets apart); drop
        temporary files of dead writers."""
        entries = sorted(self.root.glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)
        for stale in entries[: max(len(entries) - self.keep, 0)]:
            stale.unlink(missing_ok=True)
        folders = [p for p in self.root.glob(f"{DATASET_PREFIX}*") if p.is_dir()]
        folders.sort(key=lambda p: p.stat().st_mtime_ns)
        for stale in folders[: max(len(folders) - self.keep, 0)]:
            shutil.rmtree(stale, ignore_errors=True)
        # A writer killed between writing and renaming leaves `.<entry>.<pid>.tmp` behind.
        for tmp in self.root.glob(".*.tmp"):
            pid = tmp.name.rsplit(".", 2)[-2]
            if pid.isdigit() and not pid_alive(int(pid)):
                tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class CachedFrame:
    frame: pd.DataFrame
    key: str
    hit: bool


def cached_feature_frame(
    cache: FeatureCache,
    source: str | Path,
    config: Config,
    as_of: datetime | None,
    build: Callable[[], pd.DataFrame],
) -> CachedFrame:
    """The cached frame for these inputs, or `build()` stored under their key."""
    key = feature_key(source, config, as_of)
    frame = cache.get(key)
    if frame is not None:
        return CachedFrame(frame, key, hit=True)
    frame = build()
    cache.put(key, frame)
    return CachedFrame(frame, key, hit=False)


def workspace_features(
    source: str | Path,
    config: Config,
    as_of: datetime | None,
    duplicate_events: bool | None,
    progress: Callable[[str], None] | None,
    workspace: Workspace,
) -> CachedFrame:
    """Point-in-time features of `source` (at `as_of`, or every weekly snapshot) through the
    workspace's feature cache: built only when this source, config and as-of time are new.
    `duplicate_events` as validation found it (None: the build checks)."""
    from features.build import build_feature_frame

    cache = FeatureCache(workspace.cache / "features", keep=config.schedule.feature_cache_entries)

    def build() -> pd.DataFrame:
        return build_feature_frame(
            source,
            config,
            as_of=as_of,
            progress=progress,
            temp_dir=workspace.tmp,
            duplicate_events=duplicate_events,
        )

    return cached_feature_frame(cache, source, config, as_of, build)
