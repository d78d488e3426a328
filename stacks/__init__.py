"""Stack-level model: typed config, the phase model, and the composition of components."""
