"""IAM policies decide each call of an assumed role, and every call is recorded (gap 21).

moto's own enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``) matches a statement's Action only: it
passes ``*`` as the resource of every call but S3's, so a statement scoped to an ARN never allows
anything, and it evaluates ``StringEquals`` on request parameters only, ignoring every other
operator and every key that is not a parameter. The example policies (``examples/iam``) scope by
ARN and by ``aws:RequestedRegion``, ``ec2:ResourceTag/…``, ``s3:prefix`` and ``iam:AWSServiceName``.

Here, while enforcement is on, the caller of every signed request is found from its access key
(an assumed role's session, made by STS AssumeRole) and the role's policies are evaluated as the
IAM User Guide's "Policy evaluation logic" says for one account's identity-based policies: an
explicit Deny wins, else an Allow of a statement whose Action, Resource and every Condition match,
else the implicit deny (AccessDenied, naming the action and the resource). The request context
(IAM User Guide, "AWS global condition context keys"; Service Authorization Reference, "Actions,
resources, and condition keys for Amazon EC2 / Amazon S3 / Amazon DynamoDB / AWS IAM"):

- the action: the SigV4 scope's service (``monitoring`` is CloudWatch's ``cloudwatch``) and the
  operation;
- the resource: ``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`` for DynamoDB, the bucket or object
  ARN for S3, the instance, image or snapshot ARNs the EC2 actions that support resource-level
  permissions name (Terminate/Stop/ModifyInstanceAttribute, DeregisterImage, DeleteSnapshot,
  Modify{Image,Snapshot}Attribute), else ``*`` (actions without resource-level permissions);
- the condition keys ``aws:RequestedRegion`` (the SigV4 scope's region), ``ec2:ResourceTag/KEY``
  (the resource's tag), ``s3:prefix`` (ListObjects' prefix), ``iam:AWSServiceName``; a key the
  request does not carry does not match (``StringEquals``, ``StringLike``, ``StringNotEquals``,
  ``StringNotLike``; ``…IfExists`` variants match when it is absent).

A 12-digit access key id is the account itself (gap 11): the local cloud's own clients (the test
fixtures, ``local up`` making the roles) are its root and are neither evaluated nor recorded.
Signatures are not checked: the identity is the point here, not the cryptography.

Each evaluated call is recorded (action, caller, resources, allowed or not, the policy and
statement that allowed it), served with the switch at ``/_baker/iam`` (baker.local.api).
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

#: SigV4 service name -> IAM's service prefix, where they differ
PREFIX = {"monitoring": "cloudwatch"}
_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
#: EC2 actions with resource-level permissions that the policies scope: parameter prefix -> ARN kind
EC2_RESOURCES = {
    "TerminateInstances": ("InstanceId", "instance"),
    "StopInstances": ("InstanceId", "instance"),
    "ModifyInstanceAttribute": ("InstanceId", "instance"),
    "DeregisterImage": ("ImageId", "image"),
    "ModifyImageAttribute": ("ImageId", "image"),
    "DeleteSnapshot": ("SnapshotId", "snapshot"),
    "ModifySnapshotAttribute": ("SnapshotId", "snapshot"),
    # gc's stages (the image lifecycle, gap 16): each names one image
    "EnableImageDeprecation": ("ImageId", "image"),
    "DisableImageDeprecation": ("ImageId", "image"),
    "DisableImage": ("ImageId", "image"),
    "EnableImage": ("ImageId", "image"),
    "EnableImageDeregistrationProtection": ("ImageId", "image"),
    "DisableImageDeregistrationProtection": ("ImageId", "image"),
}


@dataclass
class Enforcement:
    """The switch and the record of every evaluated call."""

    on: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, on: bool | None = None, reset: bool = False) -> None:
        with self.lock:
            if on is not None:
                self.on = on
            if reset:
                self.calls = []

    def record(self, call: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append(call)

    def describe(self) -> dict[str, Any]:
        with self.lock:
            calls = list(self.calls)
        return {
            "enforce_iam": self.on,
            "calls": calls,
            "access_denied": sum(1 for c in calls if not c["allowed"]),
        }


ENFORCEMENT = Enforcement()


# --------------------------------------------------------------------------- evaluation (pure)


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str) -> bool:
    """IAM's wildcards: ``*`` any run of characters, ``?`` one character, nothing else special."""
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def condition_matches(operator: str, key: str, expected: Any, context: dict[str, list[str]]) -> bool:
    """One condition key of one operator against the request context (absent key: no match)."""
    if_exists = operator.endswith("IfExists")
    op = operator.removesuffix("IfExists")
    actual = context.get(key) if key in context else context.get(key.lower())
    if actual is None:
        return if_exists or op in ("StringNotEquals", "StringNotLike")
    wanted = [str(v) for v in _values(expected)]
    if op == "StringEquals":
        return any(a in wanted for a in actual)
    if op == "StringNotEquals":
        return all(a not in wanted for a in actual)
    if op == "StringLike":
        return any(_like(w, a) for a in actual for w in wanted)
    if op == "StringNotLike":
        return not any(_like(w, a) for a in actual for w in wanted)
    raise ValueError(f"condition operator {operator} is not evaluated by the local cloud")


def statement_allows(st: dict[str, Any], action: str, resource: str, context: dict[str, list[str]]) -> bool:
    """Whether the statement's Action, Resource and Condition all match (its Effect aside)."""
    if "Action" in st:
        if not any(_like(a.lower(), action.lower()) for a in _values(st["Action"])):
            return False
    elif any(_like(a.lower(), action.lower()) for a in _values(st.get("NotAction", []))):
        return False
    if "Resource" in st:
        if not any(_like(r, resource) for r in _values(st["Resource"])):
            return False
    elif any(_like(r, resource) for r in _values(st.get("NotResource", []))):
        return False
    for operator, keys in (st.get("Condition") or {}).items():
        for key, expected in keys.items():
            if not condition_matches(operator, key, expected, context):
                return False
    return True


def decide(
    policies: dict[str, dict[str, Any]],
    action: str,
    resources: list[str],
    context_of: Any,
) -> tuple[bool, list[dict[str, str]]]:
    """(allowed, [{resource, policy, sid}] that allowed each resource); ``context_of(resource)``
    is the request context for that resource. An explicit Deny anywhere wins."""
    grants: list[dict[str, str]] = []
    for resource in resources:
        context = context_of(resource)
        allowed_by = None
        for name, doc in policies.items():
            for st in _values(doc.get("Statement", [])):
                if not statement_allows(st, action, resource, context):
                    continue
                if st.get("Effect") == "Deny":
                    return False, grants
                allowed_by = allowed_by or {"resource": resource, "policy": name, "sid": st.get("Sid", "")}
        if allowed_by is None:
            return False, grants
        grants.append(allowed_by)
    return True, grants


# --------------------------------------------------------------------------- the request path


def _caller(account: str, access_key: str) -> tuple[str, str] | None:
    """(assumed-role ARN, role name) of an STS session's access key, None when it is none."""
    from moto.sts.models import sts_backends

    for role in list(sts_backends[account]["aws"].assumed_roles):
        if role.access_key_id == access_key:
            name = role.role_arn.split("/")[-1]
            return f"arn:aws:sts::{account}:assumed-role/{name}/{role.session_name}", name
    return None


def _role_policies(account: str, role: str) -> dict[str, dict[str, Any]]:
    from moto.iam.models import iam_backends

    backend = iam_backends[account]["aws"]
    out: dict[str, dict[str, Any]] = {}
    for name in backend.list_role_policies(role):
        _, doc = backend.get_role_policy(role, name)
        out[name] = json.loads(doc) if isinstance(doc, str) else doc
    return out


def _ec2_tags(account: str, region: str, resource_id: str) -> dict[str, str]:
    from moto.ec2.models import ec2_backends

    regions: Any = dict.get(ec2_backends, account) or {}
    backend = dict.get(regions, region)
    if backend is None:
        return {}
    return dict(dict.get(backend.tags, resource_id) or {})


def _param(response: Any, name: str) -> list[str]:
    """A query-protocol parameter: ``name`` and ``name.N``."""
    qs = response.querystring or {}
    found = [str(v) for v in qs.get(name, [])]
    found += [str(qs[k][0]) for k in sorted(qs) if re.fullmatch(re.escape(name) + r"\.\d+", k)]
    return found


def _resources(
    response: Any, service: str, op: str, account: str, region: str, s3_resource: str
) -> list[str]:
    if service == "s3":
        return [s3_resource]
    if service == "dynamodb":
        body = response.body
        try:
            table = (body if isinstance(body, dict) else json.loads(body or "{}")).get("TableName")
        except ValueError:
            table = None
        return [f"arn:aws:dynamodb:{region}:{account}:table/{table}"] if table else ["*"]
    if service == "ec2" and op in ("CreateTags", "DeleteTags"):
        kinds = {"ami": "image", "snap": "snapshot", "i": "instance", "vol": "volume"}
        out = []
        for rid in _param(response, "ResourceId"):
            kind = kinds.get(rid.split("-", 1)[0], rid.split("-", 1)[0])
            owner = "" if kind in ("image", "snapshot") else account
            out.append(f"arn:aws:ec2:{region}:{owner}:{kind}/{rid}")
        return out or ["*"]
    if service == "ec2" and op in EC2_RESOURCES:
        param, kind = EC2_RESOURCES[op]
        ids = _param(response, param)
        owner = "" if kind in ("image", "snapshot") else account
        return [f"arn:aws:ec2:{region}:{owner}:{kind}/{i}" for i in ids] or ["*"]
    return ["*"]


#: S3 subresources whose IAM action moto's S3 names by the method's default (CreateBucket, ListBucket)
S3_SUBRESOURCES = {
    "encryption": {"GET": "GetEncryptionConfiguration", "PUT": "PutEncryptionConfiguration"},
    "publicAccessBlock": {"GET": "GetBucketPublicAccessBlock", "PUT": "PutBucketPublicAccessBlock"},
}


def _s3_action(response: Any) -> str:
    """The IAM action of an S3 request (Amazon S3 User Guide, "Required permissions for Amazon S3
    API operations"): HeadBucket is s3:ListBucket, a bucket's encryption and public access block
    have actions of their own."""
    op = str(response.data.get("Action"))
    if op == "HeadBucket":
        return "ListBucket"
    method = str(getattr(response, "method", "GET"))
    for sub, by_method in S3_SUBRESOURCES.items():
        if sub in (response.querystring or {}) and method in by_method:
            return by_method[method]
    return op


def check(response: Any, s3_resource: str = "*") -> None:
    """moto's authorization hook, replaced: evaluate the caller's policies, record the call."""
    if not ENFORCEMENT.on:
        return
    found = _SCOPE.search(str((response.headers or {}).get("Authorization", "")))
    if not found:
        return
    access_key, region, sigv4_service = found.groups()
    if re.fullmatch(r"\d{12}", access_key):
        return  # the account itself (gap 11): the local cloud's own clients
    account = response.current_account
    caller = _caller(account, access_key)
    service = PREFIX.get(sigv4_service, sigv4_service)
    op = _s3_action(response) if service == "s3" else str(response._get_action())
    action = f"{service}:{op}"
    if action in ("sts:GetCallerIdentity",):  # allowed whatever the policies say (IAM User Guide)
        return
    resources = _resources(response, service, op, account, region, s3_resource)
    grants: list[dict[str, str]] = []
    if caller is None:
        allowed, arn, role = False, f"unknown access key {access_key}", ""
    else:
        arn, role = caller

        def context_of(resource: str) -> dict[str, list[str]]:
            ctx: dict[str, list[str]] = {"aws:RequestedRegion": [region]}
            if service == "ec2" and resource != "*":
                for k, v in _ec2_tags(account, region, resource.rsplit("/", 1)[-1]).items():
                    ctx[f"ec2:ResourceTag/{k}"] = [v]
            if service == "s3" and "prefix" in (response.querystring or {}):
                ctx["s3:prefix"] = [str(p) for p in response.querystring["prefix"]]
            if service == "iam":
                names = _param(response, "AWSServiceName")
                if names:
                    ctx["iam:AWSServiceName"] = names
            return ctx

        allowed, grants = decide(_role_policies(account, role), action, resources, context_of)
    ENFORCEMENT.record(
        {
            "at": time.time(),
            "action": action,
            "caller": arn,
            "role": role,
            "account": account,
            "region": region,
            "resources": resources,
            "allowed": allowed,
            "grants": grants,
        }
    )
    if not allowed:
        denied = next((r for r in resources if r not in {g["resource"] for g in grants}), resources[0])
        raise denial(service, f"User: {arn} is not authorized to perform: {action} on resource: {denied}")


def denial(service: str, message: str) -> Exception:
    """AccessDenied as the service answers it, in its own protocol, so every SDK reads the code
    and the message (EC2 says UnauthorizedOperation; DynamoDB AccessDeniedException)."""
    from werkzeug.exceptions import HTTPException

    request_id = str(uuid.uuid4())
    text = escape(message)
    if service == "dynamodb":
        kind = "com.amazonaws.dynamodb.v20120810#AccessDeniedException"
        body = json.dumps({"__type": kind, "message": message})
    elif service == "ec2":
        body = (
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
            f"<Message>{text}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
    elif service == "s3":
        body = (
            f"<Error><Code>AccessDenied</Code><Message>{text}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
    else:
        body = (
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
            f"<Message>{text}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    content_type = "application/x-amz-json-1.0" if service == "dynamodb" else "text/xml"

    class Denied(HTTPException):
        code = 403

        def get_body(self, *args: Any, **kwargs: Any) -> str:
            return body

        def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
            return [("Content-Type", content_type)]

    return Denied(description=body)


def install() -> None:
    """Route moto's authorization hook through ``check`` (gap 21)."""
    from moto.core.authorization import ActionAuthenticatorMixin

    def normal(self: Any, resource: str = "*") -> None:
        check(self)

    def s3(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        arn = f"{bucket_name or '*'}/{key_name}" if key_name else (bucket_name or "*")
        check(self, f"arn:aws:s3:::{arn}")

    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = normal  # type: ignore[method-assign]
    ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = s3  # type: ignore[method-assign]
