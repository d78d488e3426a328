"""The Pulumi program's own code; __main__.py only wires it:

config.py          StackConfig: every key, its default and limits, read once (load_config), and
                   the config that selects a set of phases (selecting, config_commands)
  config_errors.py   a bad config as one line per key
gate.py            the phase gate: the guard (migration/guard.py) against the stack's own outputs
compose.py         build(): platform -> Consul -> gateway -> the step behind the gate (components/)
outputs.py         phases, the seal and `verify`, written once the step has proven itself
versions.py        every pin
offline.py         the program under Pulumi's mocks: make plan, make bench and the tests run it
"""
