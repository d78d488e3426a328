"""The Pulumi program's own code: typed config, the phase gate, the outputs, every pin, the composition
of components, and the program under mocks (offline) that make plan and the tests run."""
