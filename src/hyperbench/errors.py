"""The one error type users see for bad input: names the field and what is allowed (exit status 2)."""


class ConfigError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
