"""The one contract check that every command and flow runs before it uses a source.

A model learnt from (or lists scored on) a source that breaks the contract would be wrong without
saying so: a score of 1e9, a null student id. So a source with contract errors is refused
(`ValidationFailed`, exit 2); warnings are reported and pass.

A source that passed is remembered in the workspace (`cache/validation/`) under the fingerprint
of its files (names, sizes, modification times), the validation config and the validation code:
the same files are not scanned again on the next command. A failing source is checked every time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from configs.schema import Config
from features.errors import NotaloneError
from features.sources import write_text_atomic
from features.validate import require_valid
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
) -> bool:
    """Validate `source`; raise `ValidationFailed` on errors. Returns whether exact duplicate
    events were found (the feature build then drops them, and need not look again)."""
    source = Path(source)
    if not source.is_dir():
        raise NotaloneError(f"source folder not found: {source}")
    memo = workspace.cache / "validation" / f"{validation_key(source, config)}.json"
    if memo.is_file():
        passed = json.loads(memo.read_text(encoding="utf-8"))
        progress("source unchanged since it passed validation")
    else:
        progress("validating the source")
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
