"""The error of a setting the project cannot use: raised by :mod:`course.settings` and by the
parsers of settings that live beside their feature (course.webhooks.endpoints); re-exported
as ``course.settings.SettingsError``."""


class SettingsError(ValueError):
    """An environment variable has a value the project cannot use."""
