"""Configuration errors."""


class ConfigError(ValueError):
    """A configuration file, override or value is invalid; the message names the key."""
