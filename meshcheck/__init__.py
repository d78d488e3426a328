"""The check Job's program: what proves each `pulumi up` on the cluster.

    migration/checks.py            the model: per service, the versions a step runs and retires, what
          |                        each does with plain text; what the precheck reads (dialedDirectly
          |                        from the versions that run before and during the `up`)
          v
    components/checks.py           maps the model onto the script's dataclasses, with the step (an
          |                        Output of the phase guard), and renders two Jobs per `up`: the
          |                        precheck before the step's config entries change, the postcheck
          |                        once every object is in place
          v
    meshcheck/expectation.py       builds the one JSON document a check reads (schema version 2):
          |                        Expectation(postcheck=..., precheck=...), written with
          |                        mesh_check.to_document and read back by its parser
          v
    the Job (MESH_CHECK_EXPECTATION, the ConfigMap's mesh_check.py, `python3 -B /checks/mesh_check.py`)
          |  precheck: pods, sidecar access logs (pods/log) and Envoy statistics (the pod's :20200)
          |  postcheck: EndpointSlices and pods, a plain-text probe of every ready pod, the gateway
          v
    one line, exit 0 (ok) / 1 (the verdict) / 2 (cannot check), the pod's termination message:
    pulumi-kubernetes' Job await puts it in the `up`'s error, and `make advance` steps back on a 1
    of the postcheck (ops/advance.py)

mesh_check.py runs alone, in the Job's stock Python image (standard library only; its file name is
the ConfigMap's key, mounted at /checks), so nothing in meshcheck/ imports the rest of the project.
The schema is written once: the dataclasses of mesh_check.py (parse_expectation reads a document into
them, to_document writes them). devtools/stubs.py stands in for the cluster the Job reads, in the
tests and in `make bench`.
"""
