"""Configuration: YAML files in this folder loaded into frozen pydantic models (see `schema`)."""

from configs.schema import Config, load_config

__all__ = ["Config", "load_config"]
