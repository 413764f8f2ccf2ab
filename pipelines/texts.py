"""Curator-facing texts of a language: `configs/messages/<language>.yaml`, parsed, checked."""

from __future__ import annotations

import yaml

from configs.schema import MESSAGES_DIR, Config, parse_yaml
from features.errors import NotaloneError
from interventions.routing import tiers_and_actions
from interventions.texts import Texts, TextsError, check_texts_cover, parse_texts


class ScoringError(NotaloneError):
    """Nothing to score, or the scoring inputs do not fit together."""


def load_texts(language: str, config: Config | None = None) -> Texts:
    """Read configs/messages/<language>.yaml; with a config, check it covers every tier, action
    and trigger the config can produce."""
    path = MESSAGES_DIR / f"{language}.yaml"
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
        texts = parse_texts(data or {}, language)
        if config is not None:
            tiers, actions = tiers_and_actions(config.scoring)
            check_texts_cover(texts, tiers, actions, {t.name for t in config.scoring.triggers})
    except FileNotFoundError as exc:
        raise ScoringError(f"message file not found: {path}") from exc
    except (yaml.YAMLError, TextsError) as exc:
        raise ScoringError(f"message file {path}: {exc}") from exc
    return texts
