"""Every pinned version in one place. Each can be overridden under the `versions` config object."""

# EKS standard support for 1.35 runs until March 2027; 1.34 leaves it on 2 December 2026.
KUBERNETES = "1.35"

# EKS managed add-ons, pinned to builds published for KUBERNETES. The EKS user guide lists only the
# newest build per Kubernetes version; to see every build a version accepts:
#   aws eks describe-addon-versions --kubernetes-version 1.35 --addon-name aws-ebs-csi-driver \
#     --query 'addons[0].addonVersions[].addonVersion'   (and coredns, kube-proxy, vpc-cni)
EBS_CSI_ADDON = "v1.53.0-eksbuild.1"
COREDNS_ADDON = "v1.13.1-eksbuild.1"
KUBE_PROXY_ADDON = "v1.35.3-eksbuild.2"
VPC_CNI_ADDON = "v1.21.1-eksbuild.8"

# AWS Load Balancer Controller chart (appVersion v3.5.0) from https://aws.github.io/eks-charts
LB_CONTROLLER_CHART = "3.5.0"

# consul-k8s Helm chart from https://helm.releases.hashicorp.com and the images released with it.
CONSUL_CHART = "2.0.3"
CONSUL_IMAGE = "hashicorp/consul:2.0.3"
CONSUL_K8S_IMAGE = "hashicorp/consul-k8s-control-plane:2.0.3"
CONSUL_DATAPLANE_IMAGE = "hashicorp/consul-dataplane:2.0.3"

# Demo services.
FAKE_SERVICE_IMAGE = "nicholasjackson/fake-service:v0.26.0"

# The checks' Job (meshcheck/mesh_check.py runs on the standard library only): stock Python, by tag and
# by the digest of that tag's multi-arch index, so the image cannot change under a pinned tag.
CHECK_IMAGE = "python:3.13.14-alpine3.24@sha256:399babc8b49529dabfd9c922f2b5eea81d611e4512e3ed250d75bd2e7683f4b0"

# The Pulumi CLI that `make up`/`preview`/`destroy`/`demo` install into .venv/pulumi when no CLI this new
# is on PATH (ops/toolchain.py). Pulumi releases the CLI and the Python SDK together under one version
# number: keep it equal to the `pulumi` SDK locked in requirements.txt (a test holds that).
PULUMI_CLI = "3.272.0"
