"""Core settings for tests, built the way the assets build them: from the run config."""


def settings_for(config_cls, method: str = "settings", **values):
    """The core settings of ``config_cls``'s defaults with ``values`` on top: config knobs go
    through the config (validated as in a run), core-only fields (``logging_steps``,
    ``threshold``) pass straight to the dataclass."""
    knobs = {k: v for k, v in values.items() if k in config_cls.model_fields}
    return getattr(config_cls(**knobs), method)(**{k: v for k, v in values.items() if k not in knobs})
