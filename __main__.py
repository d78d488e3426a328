"""consul-mesh-migration: one `pulumi up` per migration phase. Only wiring lives here."""

import pulumi

from program.compose import build
from program.config import load_config

config = load_config()  # bad config stops here, before any resource is registered
for name, value in build(config).items():
    pulumi.export(name, value)
