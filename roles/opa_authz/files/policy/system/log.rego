# Decision-log policy of the bundle (bundle mode only). OPA's decision logger evaluates
# data.system.log.drop and data.system.log.mask - the default drop_decision and mask_decision
# paths of its decision_logs configuration - before it logs a decision, with the decision-log
# EVENT as input: input.input is what the plugin evaluated, input.result the allow decision
# (absent when the evaluation failed). See docs/explain.md "Log volume".
package system.log

import rego.v1

# ------------------------------------------------------------------------------------------
# drop: bound the volume. An allowed decision is not logged unless a rule in audit mode flags
# it (a would-be denial); denials and errors are always logged. With no rule in audit the
# policy has no `audit` rule at all, so only denials and errors are logged (pure enforce).
# ------------------------------------------------------------------------------------------
drop if {
	input.result == true
	not would_be_denied
}

would_be_denied if {
	event := input
	count(data.docker.authz.audit) > 0 with input as event.input
}

# ------------------------------------------------------------------------------------------
# mask: bound the size of one log line. dockerd up to 24.0.2 (logrus before 1.9.3, and distro
# builds against such a logrus, e.g. Debian 12's docker.io 20.10) reads a plugin's stderr line
# by line with a 64 KiB limit: one longer line (a request with a large body: any API user can
# send one) makes it stop reading, and the plugin then blocks on a full pipe and hangs the
# whole Docker API. An input whose JSON exceeds max_input characters (up to 4 bytes each in the
# line) is replaced by a trimmed copy: long strings cut, other large values replaced by a
# marker, and the verdict recorded in DockerAuthzMasked (the deny and audit reasons computed
# on the full input at decision time), which explain shows instead of re-evaluating.
# ------------------------------------------------------------------------------------------
max_input := 12288

max_part := 1024

max_field := 512

max_key := 128

input_size := count(json.marshal(input.input))

mask contains rule if {
	is_object(input.input)
	input_size > max_input
	rule := {"op": "upsert", "path": "/input", "value": masked_input}
}

masked_input := object.union(second_pass, {"DockerAuthzMasked": record})

record := {
	"characters": input_size,
	"deny": array.slice([short_reason(r) | some r in denials], 0, 10),
	"audit": array.slice([short_reason(r) | some r in audits], 0, 10),
}

denials := d if {
	event := input
	d := [r | some r in data.docker.authz.deny] with input as event.input
} else := []

audits := a if {
	event := input
	a := [r | some r in data.docker.authz.audit] with input as event.input
} else := []

short_reason(r) := r if {
	count(r) <= 240
} else := concat("", [substring(r, 0, 240), "..."])

# First pass: every value of the input's objects (the body, its HostConfig, the headers and
# the query) and of its arrays shortened; keys longer than max_key left out.
first_pass := {k: part(k, v) | some k, v in input.input}

part(k, v) := shallow_body(v) if {
	k == "Body"
	is_object(v)
} else := shallow(v) if {
	is_object(v)
} else := [short(x) | some x in v] if {
	is_array(v)
} else := short(v)

shallow_body(body) := merged if {
	is_object(body.HostConfig)
	merged := object.union(shallow(body), {"HostConfig": shallow(body.HostConfig)})
} else := shallow(body)

shallow(obj) := out if {
	out := {k: short(x) | some k, x in obj; count(k) <= max_key}
}

short(x) := x if {
	count(json.marshal(x)) <= max_part
} else := concat("", [substring(x, 0, 256), sprintf("...<%d characters masked>", [count(x)])]) if {
	is_string(x)
} else := sprintf("<masked: %d characters of JSON>", [count(json.marshal(x))])

# Second pass, when the first is still too large (many keys): every field larger than
# max_field is cut down; the body keeps only the few fields explain names a request by.
second_pass := first_pass if {
	count(json.marshal(first_pass)) <= max_input
} else := {k: field(k, v) | some k, v in first_pass}

field(k, v) := v if {
	count(json.marshal(v)) <= max_field
} else := {n: x | some n in ["Image", "User", "Privileged"]; x := v[n]; count(json.marshal(x)) <= 256} if {
	k == "Body"
	is_object(v)
} else := concat("", [substring(v, 0, 256), sprintf("...<%d characters masked>", [count(v)])]) if {
	is_string(v)
} else := sprintf("<masked: %d characters of JSON>", [count(json.marshal(v))])
