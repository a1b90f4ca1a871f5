"""Render authz.rego.j2 exactly as the role does and evaluate it with real Rego engines (OPA, regopy).

- :func:`render` renders the template with jinja2, the collection's own filter plugin and
  ansible-core's ``to_nice_json``/``comment`` filters, from the role defaults plus overrides,
  with the environment settings of Ansible's template action (test_render_playbook.py proves
  byte-equality with the real ``playbooks/render_policy.yml``).
- :class:`Policy` compiles one rendering ONCE with regopy and evaluates many inputs against it;
  :func:`compiled` gives the v1 rendering on OPA's own engine and regopy at once
  (tests/policy/engines.py: the two must agree), the v0 rendering on regopy.
- :func:`decision` builds the input document with the input builder of the opa-docker-authz
  test double (tests/opa_docker_authz_double/opa_input.py, v0.10's makeInput) first.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jinja2
import regopy
import yaml
from ansible.plugins.filter.core import FilterModule as CoreFilters

from ansible_collections.hardening.docker_authz.plugins.filter.policy import FilterModule as PolicyFilters
from tests.opa_docker_authz_double.opa_input import build_input, make_authz_request
from tests.policy.engines import BothEngines, OpaPolicy

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "opa_authz"
TEMPLATE = ROLE / "templates" / "authz.rego.j2"
ANSIBLE_MANAGED = "Ansible managed"
V0_IMAGE = "openpolicyagent/opa-docker-authz-v2:0.4"
V1_IMAGE = "ghcr.io/open-policy-agent/opa-docker-authz:v0.10"


@functools.cache
def role_defaults() -> dict[str, Any]:
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def _environment() -> jinja2.Environment:
    # ansible-core's template action: trim_blocks=True, lstrip_blocks=False, "\n" newlines,
    # the file's trailing newline kept.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)),
        trim_blocks=True,
        lstrip_blocks=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    core = CoreFilters().filters()
    env.filters["to_nice_json"] = core["to_nice_json"]
    env.filters["comment"] = core["comment"]
    for name, func in PolicyFilters().filters().items():
        env.filters[f"hardening.docker_authz.{name}"] = func
    return env


@functools.cache
def _template() -> jinja2.Template:
    return _environment().get_template(TEMPLATE.name)


def variables(**overrides: Any) -> dict[str, Any]:
    """Role defaults with overrides (keys without the docker_authz_ prefix are accepted)."""
    values = dict(role_defaults())
    for key, value in overrides.items():
        values[key if key.startswith("docker_authz_") else f"docker_authz_{key}"] = value
    return values


def render(dialect: str = "v1", **overrides: Any) -> str:
    """The policy text for these variables; ``dialect`` picks the plugin image (v0: tag 0.4)."""
    values = variables(**overrides)
    if "docker_authz_plugin_image" not in {
        k if k.startswith("docker_authz_") else "docker_authz_" + k for k in overrides
    }:
        values["docker_authz_plugin_image"] = V0_IMAGE if dialect == "v0" else V1_IMAGE
    return _template().render(ansible_managed=ANSIBLE_MANAGED, **values)


def bundle_files(**overrides: Any) -> dict[str, str]:
    """The bundle-mode files for these variables ({path in the bundle: content}, Rego v1), from
    the same filter the role calls (``hardening.docker_authz.policy_bundle``)."""
    return PolicyFilters().filters()["policy_bundle"](variables(**overrides))


def deny_members(node_json: Any) -> set[str]:
    """deny as a Python set. regopy returns a v0 partial set (``deny[msg] { }``) as an object of
    ``msg: true`` (OPA returns a set); both mean the same members."""
    if isinstance(node_json, dict):
        assert all(v is True for v in node_json.values()), node_json
        return set(node_json)
    return set(node_json or [])


class Policy:
    """One rendered policy, compiled ONCE by regopy into a bundle, evaluated for many inputs.
    (tests/policy/engines.py has the same on OPA's own engine, and both at once.)"""

    engine_name = "regopy"
    QUERY = "allow := data.docker.authz.allow; deny := data.docker.authz.deny"

    def __init__(self, text: str) -> None:
        self.text = text
        self.rego = regopy.Interpreter()
        self.rego.add_module("authz.rego", text)
        self.bundle = self.rego.build(self.QUERY, [])
        if not self.bundle.ok():
            # (printing a failed regopy output can crash the interpreter: say it here instead)
            raise AssertionError("regopy cannot compile this rendering: its errors are printed on stdout")

    def evaluate(self, input_doc: dict[str, Any]) -> tuple[bool, set[str]]:
        run = regopy.Interpreter()
        run.set_input(input_doc)
        out = run.query_bundle(self.bundle)
        if not out.ok():
            raise AssertionError(f"policy evaluation failed: {out}")
        allow = json.loads(out.binding("allow").json())
        deny = deny_members(json.loads(out.binding("deny").json()))
        if not isinstance(allow, bool):
            raise AssertionError(f"allow is not a boolean: {allow!r}")
        return allow, deny

    def decide(self, authz_req: dict[str, Any]) -> tuple[bool, set[str]]:
        return self.evaluate(build_input(authz_req))

    def query(self, query: str, input_doc: dict[str, Any] | None = None) -> Any:
        """Evaluate any expression against the policy (compiles again: for a few checks)."""
        self.rego.set_input(input_doc if input_doc is not None else {})
        out = self.rego.query(f"x := {query}")
        if not out.ok():
            raise AssertionError(f"query {query} failed: {out}")
        return json.loads(out.binding("x").json())


ENGINES = ("both", "opa", "regopy")


def make_policy(text: str, dialect: str = "v1", engine: str = "both") -> Policy | OpaPolicy | BothEngines:
    """A compiled policy on ``engine``: ``both`` (OPA and regopy, which must agree; OPA's answer),
    ``opa`` or ``regopy``. The v0 dialect is regopy's alone: OPA 1.x parses Rego v1 only."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (expected one of {ENGINES})")
    if dialect == "v0" or engine == "regopy":
        if engine == "opa":
            raise ValueError("OPA 1.x cannot evaluate the v0 dialect")
        return Policy(text)
    if engine == "opa":
        return OpaPolicy(text)
    return BothEngines(OpaPolicy(text), Policy(text))


@functools.cache
def compiled(dialect: str = "v1", engine: str = "both", **overrides: Any) -> Policy | OpaPolicy | BothEngines:
    """A cached compiled policy (overrides must be hashable: pass tuples for lists). The v1
    rendering is evaluated by OPA and regopy at once (see :func:`make_policy`)."""
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
    return make_policy(render(dialect, **plain), dialect, engine)


def request(
    method: str,
    uri: str,
    body: Any = None,
    *,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
    user: str = "",
) -> dict[str, Any]:
    """An AuthZReq as the daemon sends it for this HTTP request (hand-made fixtures)."""
    hdrs = dict(headers or {})
    raw = None
    if body is not None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if content_type:
            hdrs.setdefault("Content-Type", content_type)
    return make_authz_request(method, uri, hdrs, raw, user=user, auth_method="TLS" if user else "")
