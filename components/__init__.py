"""One Pulumi ComponentResource per concern; program/compose.py builds them in this order:

    platform    eks: Network -> EksCluster -> LoadBalancerController        (network, cluster, lb_controller)
                kubernetes: ExistingCluster                                  (target)
                  = ClusterTarget: the Kubernetes provider and what must exist first (target)
    Consul      Consul, from the chart's values (consul, consul_values), and ConsulDnsForwarding (dns)
    entry       ApiGateway (gateway)
    the step    behind the Gate (target): MeshChecks' precheck (checks) -> ConfigEntries (config_entries)
                -> DemoServices (services) -> MeshChecks' postcheck

Each takes one Args dataclass, and a component it needs whole; the Kubernetes provider comes through
`opts` at the call site and every child inherits it. Every annotation key the program writes is in
annotations.py, every CRD model in crds/. A component's type token is state, not a module path.
"""
