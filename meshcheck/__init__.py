"""The check Job's program: what proves each `pulumi up` on the cluster.

    migration/checks.py           what a step expects: the services it makes strict (precheck_target),
                                  the versions that run (running)
      meshcheck/expectation.py    the one JSON document a check reads (schema version 1)
        components/checks.py      the Jobs: the precheck before the step's config entries change, the
                                  postcheck once every object is in place
          meshcheck/mesh_check.py   the verdict, one line: run_precheck decides from the sidecars'
                                    access logs whether a caller outside the mesh still calls a
                                    service in plain text (find_callers); run_postcheck sends requests
                                    through the gateway and plain-text probes

mesh_check.py runs alone, in the Job's stock Python image (standard library only; its file name is
the ConfigMap's key, mounted at /checks), so nothing in meshcheck/ imports the rest of the project.
"""
