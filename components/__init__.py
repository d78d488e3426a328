"""One Pulumi ComponentResource per concern; each takes one Args dataclass."""
