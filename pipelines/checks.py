"""The one contract check that every command and flow runs before it uses a source.

A model learnt from (or lists scored on) a source that breaks the contract would be wrong without
saying so: a score of 1e9, a null student id. So a source with contract errors is refused
(`ValidationFailed`, exit 2); warnings are reported and pass.

A source that passed is remembered in the workspace (`cache/validation/`) under the fingerprint
of its files (names, sizes, modification times), the validation config and the validation code:
the same files are not scanned again on the next command. A failing source is checked every time.

With a Dask cluster the check runs partitioned (`features.validate`'s head, slices, merge): the
head and each slice of course runs are tasks on the workers, which read the source by its path;
the client merges their problem lists (small) into the report the local check gives.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from configs.schema import Config
from features.errors import NotaloneError
from features.sources import write_text_atomic
from features.validate import (
    ValidationFailed,
    ValidationReport,
    merge_validation,
    require_valid,
    validate_slice,
    validation_head,
)
from pipelines.dask_store import client_at, run_each, run_one
from pipelines.feature_cache import code_fingerprint, source_fingerprint
from pipelines.runner import WARNING_PREFIX, Progress, no_progress
from pipelines.settings import Workspace

# Modules whose code decides whether a source passes.
VALIDATION_CODE_MODULES = ("features.validate", "features.contract", "features.sources")


def validation_key(source: Path, config: Config) -> str:
    payload = {
        "source": source_fingerprint(source),
        "config": config.validation.model_dump(mode="json"),
        "code": code_fingerprint(VALIDATION_CODE_MODULES),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def check_source(
    source: str | Path,
    config: Config,
    workspace: Workspace,
    progress: Progress = no_progress,
    dask: str | None = None,
) -> bool:
    """Validate `source`; raise `ValidationFailed` on errors. Returns whether exact duplicate
    events were found (the feature build then drops them, and need not look again). `dask`: a
    scheduler address; the check then runs partitioned on its workers."""
    source = Path(source)
    if not source.is_dir():
        raise NotaloneError(f"source folder not found: {source}")
    memo = workspace.cache / "validation" / f"{validation_key(source, config)}.json"
    if memo.is_file():
        passed = json.loads(memo.read_text(encoding="utf-8"))
        progress("source unchanged since it passed validation")
    else:
        progress("validating the source" + (" on the Dask cluster" if dask else ""))
        if dask:
            report = validate_on_cluster(source, config, dask, workspace.tmp)
            if not report.ok:
                raise ValidationFailed(report)
        else:
            report = require_valid(source, config.validation, temp_dir=workspace.tmp)
        passed = {
            "duplicate_events": report.duplicate_events,
            "warnings": len(report.warnings),
            "summary": report.summary(),
        }
        write_text_atomic(memo, json.dumps(passed))
    if passed["warnings"]:
        progress(
            f"{WARNING_PREFIX}{passed['warnings']} validation warning(s): {passed['summary']}; "
            f"see `notalone validate --source {source}`"
        )
    return bool(passed["duplicate_events"])


def validate_on_cluster(
    source: str | Path, config: Config, dask: str, temp_dir: Path | None = None
) -> ValidationReport:
    """The contract check of `source` partitioned by course run on the cluster at `dask`: the
    head and each slice (`dask.runs_per_partition` runs) a task; the same report as the local
    `validate_source`. Only the path travels; the workers need the source on shared storage."""
    source = str(Path(source).resolve())
    spill = str(temp_dir) if temp_dir else None
    with client_at(dask) as client:
        head = run_one(
            client,
            validation_head,
            source,
            config.validation,
            config.dask.runs_per_partition,
            spill,
        )
        calls = [(source, config.validation, s, head.exported_at, spill) for s in head.slices]
        slices = run_each(client, validate_slice, calls)
    return merge_validation(head, slices, config.validation)
