"""Typed run configuration: dataclass sections, YAML + ``--set`` loading, derived values.

``load_config(cls, path=None, overrides=())`` is generic: fine-tuning configs
reuse :class:`TrainConfig` and :class:`OptimConfig` as sections of their own
dataclass and load the same way.
"""

from echocare.config.derived import DerivedSchedule, derive_schedule
from echocare.config.errors import ConfigError
from echocare.config.loader import (
    all_keys,
    coerce,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    describe_config,
    format_config_help,
    load_config,
    save_config,
)
from echocare.config.schema import DataConfig, ModelConfig, OptimConfig, PretrainConfig, TrainConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "DerivedSchedule",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "TrainConfig",
    "all_keys",
    "coerce",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "derive_schedule",
    "describe_config",
    "format_config_help",
    "load_config",
    "save_config",
]
