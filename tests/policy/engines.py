"""The policy tests' second engine: OPA's own (OPA 1.20.2 through opa-golib-python-bindings).

- :class:`OpaPolicy` is :class:`tests.policy.harness.Policy` on OPA's engine: the rendering is
  compiled ONCE (on the first evaluation: OPA prepares the query then and keeps it) and
  evaluated for many inputs; ``evaluate`` returns ``(allow, deny set)``.
- :class:`BothEngines` evaluates every input on OPA and on regopy and fails the test when they
  disagree (OPA is the engine the plugin runs: where they differ, OPA is right, and the
  difference is a regopy quirk to understand, or a policy bug).

OPA 1.x parses Rego v1 only, so the v0 rendering (plugin tags 0.2-0.8) stays on regopy alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

from tests.opa_docker_authz_double.opa_input import build_input

ALLOW_DENY = "allow := data.docker.authz.allow; deny := data.docker.authz.deny"


class EngineDisagreement(AssertionError):
    """OPA and regopy gave different decisions for the same policy and input."""


def _deny_set(value: Any) -> set[str]:
    if isinstance(value, dict):  # regopy's shape of a v0 partial set; OPA gives a list
        assert all(v is True for v in value.values()), value
        return set(value)
    if not isinstance(value, list):
        raise AssertionError(f"deny is not a set: {value!r}")
    return set(value)


class OpaPolicy:
    """One rendered policy (or bundle: several modules and data), compiled once by OPA."""

    engine_name = "opa"

    def __init__(
        self, text: str | None = None, *, modules: Mapping[str, str] | None = None, data: Any = None
    ) -> None:
        self.text = text
        self.engine = OpaEngine()
        if text is not None:
            self.engine.add_policy("authz.rego", text)
        for name, source in (modules or {}).items():
            self.engine.add_policy(name, source)
        if data:
            self.engine.add_data(data)
        self.engine.eval_query("true")  # compile now: a broken rendering fails here, once

    def evaluate(self, input_doc: dict[str, Any]) -> tuple[bool, set[str]]:
        try:
            rows = self.engine.eval_query(ALLOW_DENY, input_doc)
        except OpaError as e:
            raise AssertionError(f"policy evaluation failed on OPA: {e}") from None
        if not rows:
            raise AssertionError("allow or deny is undefined on OPA")
        allow, deny = rows[0]["allow"], rows[0]["deny"]
        if not isinstance(allow, bool):
            raise AssertionError(f"allow is not a boolean: {allow!r}")
        return allow, _deny_set(deny)

    def decide(self, authz_req: dict[str, Any]) -> tuple[bool, set[str]]:
        return self.evaluate(build_input(authz_req))

    def query(self, query: str, input_doc: dict[str, Any] | None = None) -> Any:
        """Evaluate any expression against the policy (the value; AssertionError if undefined)."""
        try:
            rows = self.engine.eval_query(f"x := {query}", input_doc if input_doc is not None else {})
        except OpaError as e:
            raise AssertionError(f"query {query} failed on OPA: {e}") from None
        if not rows:
            raise AssertionError(f"query {query} is undefined on OPA")
        return rows[0]["x"]

    def document(self, path: str, input_doc: dict[str, Any] | None = None) -> Any:
        """data.<path>, or None when undefined."""
        try:
            return self.engine.eval_document(path, input_doc if input_doc is not None else {})
        except OpaUndefinedError:
            return None

    def close(self) -> None:
        self.engine.close()


def _normal(value: Any) -> Any:
    """A query value with regopy's set shape ({member: true}) and OPA's (a list) made equal."""
    if isinstance(value, dict) and value and all(v is True for v in value.values()):
        return sorted(value)
    if isinstance(value, list):
        return sorted((_normal(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


class BothEngines:
    """Evaluates on OPA and on regopy; returns OPA's decision, fails when they disagree."""

    engine_name = "opa+regopy"

    def __init__(self, opa: OpaPolicy, regopy: Any) -> None:
        self.opa = opa
        self.regopy = regopy
        self.text = opa.text

    def evaluate(self, input_doc: dict[str, Any]) -> tuple[bool, set[str]]:
        got = self.opa.evaluate(input_doc)
        other = self.regopy.evaluate(input_doc)
        if got != other:
            raise EngineDisagreement(
                f"OPA and regopy disagree (OPA is right): OPA {got}, regopy {other}; input "
                f"{json.dumps(input_doc, sort_keys=True)[:2000]}"
            )
        return got

    def decide(self, authz_req: dict[str, Any]) -> tuple[bool, set[str]]:
        return self.evaluate(build_input(authz_req))

    def query(self, query: str, input_doc: dict[str, Any] | None = None) -> Any:
        got = self.opa.query(query, input_doc)
        other = self.regopy.query(query, input_doc)
        if _normal(got) != _normal(other):
            raise EngineDisagreement(f"OPA and regopy disagree on {query}: OPA {got!r}, regopy {other!r}")
        return got
