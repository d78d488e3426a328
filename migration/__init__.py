"""The migration model: what each phase means for each service, the fleet's constraints, the guard
and the planner. Plain Python with no Pulumi import: the spec of the product, read by `components/`
(which turns it into resources) and `program/` (which loads config into it)."""
