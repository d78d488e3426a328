"""The migration model, plain Python with no Pulumi import: the one place that says what a phase means.

    phases.py         Phase: discovery -> permissive -> strict -> virtual -> hardened, and what each
                      means for one service's two sides (inbound(), refuses_plain_text(), versions())
      fleet.py        Service, Fleet: the call graph, and the static rules it must keep (check_graph)
        step.py       Step: one `pulumi up`, from the phases deployed to the phases selected;
                      check_step and its rules (going strict: _plain_text_rule), dialed_directly,
                      flip_window (the known window of a strict flip, either way)
          entries.py    the Consul config entries a step needs: ServiceDefaults, intentions, Mesh
          workloads.py  the Deployments a step runs, and how each addresses its upstreams
          checks.py     what a step's checks expect: precheck_target (the services the step makes
                        strict, so the precheck reads their callers), running (for the postcheck)
          drain.py      how long a retired version keeps serving
      guard.py        one phase per service per `up`, forward or back (allowed), from a step that
                      completed (the seals)
      plan.py         the waves: the fewest `up`s to hardened, race-free wherever that costs nothing
    protocols.py      what a service's protocol lets its sidecars and the gateway do
    outside.py        callers that never move into the mesh, and destinations outside it

A step back is a step like any other (the guard allows one phase back); make advance takes it
(ops/advance.py) when a step's postcheck fails. components/ turns the model into resources;
program/ loads the stack config into it.
"""
