"""consul-mesh-migration: one `pulumi up` per migration phase. Only wiring lives here."""

import pulumi

from stacks.config import load_config
from stacks.platform import build

config = load_config()  # bad config stops here, before any resource is registered
for name, value in build(config).items():
    pulumi.export(name, value)
