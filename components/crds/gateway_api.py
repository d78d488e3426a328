"""Typed models of the gateway.networking.k8s.io kinds this program creates: Gateway and HTTPRoute.

Only the fields we set are modelled, each checked against the CRD schema the consul-k8s chart
installs (served as v1 and v1beta1). No ReferenceGrant: the HTTPRoute lives in its backend
Service's namespace, and a route's parentRef to a Gateway in another namespace is admitted by the
Gateway's allowedRoutes, not by a grant. crds.custom_resource turns a model into the object.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from . import CrdSpec, Name, _Model

API_VERSION = "gateway.networking.k8s.io/v1"
PortNumber = Annotated[int, Field(ge=1, le=65535)]


class Spec(CrdSpec):
    API_VERSION: ClassVar[str] = API_VERSION


# --- Gateway -------------------------------------------------------------------------------------


class LabelSelectorRequirement(_Model):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(_Model):
    match_expressions: list[LabelSelectorRequirement]


class RouteNamespaces(_Model):
    from_: Literal["All", "Same", "Selector"] = Field(validation_alias="from", serialization_alias="from")
    selector: LabelSelector | None = None


class AllowedRoutes(_Model):
    namespaces: RouteNamespaces


class Listener(_Model):
    name: Name
    port: PortNumber
    protocol: Literal["HTTP", "HTTPS", "TCP"]
    allowed_routes: AllowedRoutes


class Gateway(Spec):
    KIND: ClassVar[str] = "Gateway"

    gateway_class_name: Name
    listeners: list[Listener] = Field(min_length=1)


# --- HTTPRoute -----------------------------------------------------------------------------------


class ParentReference(_Model):
    name: Name
    namespace: Name
    section_name: Name  # the listener, so a second listener never picks the route up unasked


class PathMatch(_Model):
    type: Literal["Exact", "PathPrefix"]
    value: Annotated[str, Field(pattern=r"^/")]


class RouteMatch(_Model):
    path: PathMatch


class LocalObjectReference(_Model):
    group: str
    kind: str
    name: Name


class RouteFilter(_Model):
    type: Literal["ExtensionRef"]
    extension_ref: LocalObjectReference


class BackendRef(_Model):
    name: Name  # a Service in the route's own namespace
    port: PortNumber


class RouteRule(_Model):
    matches: list[RouteMatch] = Field(min_length=1)
    filters: list[RouteFilter] | None = None
    backend_refs: list[BackendRef] = Field(min_length=1)


class HTTPRoute(Spec):
    KIND: ClassVar[str] = "HTTPRoute"

    parent_refs: list[ParentReference] = Field(min_length=1)
    rules: list[RouteRule] = Field(min_length=1)
