"""Every annotation and label key the program writes on a Kubernetes object, and what reads each.

Like consul-k8s's control-plane/connect-inject/constants/annotations_and_labels.go: one place to
look up what a key does and who acts on it, at the versions this project pins (consul-k8s v2.0.3,
consul-dataplane 2.0.3, AWS Load Balancer Controller v3.5.0, pulumi-kubernetes as locked).
"""

from __future__ import annotations

# --- consul-k8s: the connect injector (control-plane/connect-inject/constants/annotations_and_labels.go) ---

# Whether the injector adds a sidecar to the pod: "true" in the mesh, "false" keeps it out.
INJECT = "consul.hashicorp.com/connect-inject"
# Redirect all of the pod's traffic through the sidecar (transparent proxy).
TRANSPARENT_PROXY = "consul.hashicorp.com/transparent-proxy"
# The app of a migrating service's mesh version listens on localhost only; the injector rewrites
# its HTTP probes to go through Envoy, which forwards them to localhost.
OVERWRITE_PROBES = "consul.hashicorp.com/transparent-proxy-overwrite-probes"
# The container port Consul registers for the pod. Without it the injector takes every port of the
# first container, and on Consul CE registers the first (webhook/mesh_webhook.go
# defaultConnectServicePortsAnnotation; endpoints controller createServiceRegistrations).
SERVICE_PORT = "consul.hashicorp.com/connect-service-port"
# Inbound ports left out of traffic redirection (webhook/redirect_traffic.go iptablesConfigJSON): the
# ports of an adopted pod's grpc and tcpSocket probes, which the injector does not move to Envoy.
EXCLUDE_INBOUND_PORTS = "consul.hashicorp.com/transparent-proxy-exclude-inbound-ports"
# The pod's DNS goes to Consul DNS (through the dataplane), so <up>.virtual.consul resolves.
CONSUL_DNS = "consul.hashicorp.com/consul-dns"
# consul-dataplane drains its listeners at SIGTERM but keeps accepting connections for this long,
# then quits (consul-dataplane release/2.0.x pkg/consuldp/lifecycle.go, gracefulShutdown; the chart
# default is 30 s): it must outlive the app's preStop, and the pod's grace period ends it.
SIDECAR_SHUTDOWN_GRACE = "consul.hashicorp.com/sidecar-proxy-lifecycle-shutdown-grace-period-seconds"

# CIDRs the pod's traffic redirection leaves out (webhook/redirect_traffic.go ExcludeOutboundCIDRs):
# what every pod reaches that the mesh never serves (migration/outside.py never_through_the_mesh).
TPROXY_EXCLUDE_OUTBOUND_CIDRS = "consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs"

# --- consul-k8s: catalog sync (control-plane/catalog/to-consul/resource.go) ---

# shouldSync skips a Service annotated "false": its pods are not registered in Consul's catalog.
SERVICE_SYNC = "consul.hashicorp.com/service-sync"

# --- consul-k8s: the API gateway's pods (control-plane/api-gateway/common/labels.go LabelsForGateway) ---

# Labels the gateway controller puts on a Gateway's pods; the program selects them (its budget).
GATEWAY_COMPONENT = "component"  # "api-gateway"
GATEWAY_NAME_LABEL = "gateway.consul.hashicorp.com/name"
GATEWAY_NAMESPACE_LABEL = "gateway.consul.hashicorp.com/namespace"

# --- the AWS Load Balancer Controller, on a Service (docs/guide/service/annotations.md) ---

# "external": the controller, not the in-tree cloud provider, makes the Service's NLB and claims it
# by this annotation (pkg/service/service_utils.go IsServiceSupported), with no loadBalancerClass.
LB_TYPE = "service.beta.kubernetes.io/aws-load-balancer-type"
# "ip": the NLB targets the pod IPs directly (no node hop).
LB_TARGET_TYPE = "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"
# "internet-facing" (public subnets) or "internal" (private subnets).
LB_SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
# The allow-list the controller writes into the NLB's security group, read from this annotation
# where spec.loadBalancerSourceRanges cannot be set (a Service that Consul's controller creates).
LB_SOURCE_RANGES = "service.beta.kubernetes.io/load-balancer-source-ranges"

# --- EKS and Kubernetes ---

# IRSA: EKS's pod identity webhook gives the pods of a ServiceAccount so annotated this IAM role.
IRSA_ROLE_ARN = "eks.amazonaws.com/role-arn"
# The API server's DefaultStorageClass admission gives a PersistentVolumeClaim without a class this one.
IS_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"

# --- pulumi-kubernetes (provider/pkg/await, provider/pkg/metadata) ---

# When the object counts as created: a condition or a JSONPath the provider awaits.
WAIT_FOR = "pulumi.com/waitFor"
# A server-side-apply patch takes over fields another field manager owns.
PATCH_FORCE = "pulumi.com/patchForce"
# The server-side-apply field manager of a patch (provider.go fieldManagerName): the program's own
# name, so `kubectl get -o yaml --show-managed-fields` shows which fields it owns on a team's workload.
PATCH_FIELD_MANAGER = "pulumi.com/patchFieldManager"
# An object that did not become ready is replaced on the next `up` rather than updated.
REPLACE_UNREADY = "pulumi.com/replaceUnready"

# --- this project's own (read by people and by `make plan`, no controller acts on them) ---

# The label of the check Jobs and their pods: `precheck` or `postcheck` (the namespace: `checks`).
CHECK_LABEL = "consul-mesh-migration/check"
# The hash of the check script on the check pods, so a new script makes a new Job.
CHECK_SCRIPT = f"{CHECK_LABEL}-script"
# On a check Job, what it waits for, as an input rather than depends_on (see components/checks.py).
AFTER = "consul-mesh-migration/after"
