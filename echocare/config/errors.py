"""Configuration errors."""

from echocare.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration file, override or value is invalid; the message names the key."""
