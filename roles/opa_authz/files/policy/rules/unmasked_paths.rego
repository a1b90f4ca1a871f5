# Rule unmasked_paths of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# unmasked_paths (docker_authz_deny_unmasked_paths): systempaths=unconfined arrives as empty
# MaskedPaths/ReadonlyPaths; any list replaces the daemon's defaults.
# ------------------------------------------------------------------------------------------
masking_fields := ["maskedpaths", "readonlypaths"]

deny contains msg if {
	creating
	names := {name | name := masking_fields[_]; value := body_levels[_][name]; is_array(value)}
	name := names[_]
	msg := concat("", ["unmasked_paths: a custom ", name, " list (--security-opt systempaths=unconfined) is not allowed"])
}

# --security-opt writable-cgroups (Docker 28; daemon_unix.go parseSecurityOpt, bare or with a
# ParseBool value): the daemon mounts /sys/fs/cgroup read-write, as for --privileged, so root in
# the container writes its cgroup's interface files. Denied unless the value is false.
deny contains "unmasked_paths: --security-opt writable-cgroups (a writable /sys/fs/cgroup) is not allowed" if {
	pairs := security_opts
	pair := pairs[_]
	pair[0] == "writable-cgroups"
	not parse_bool_false(pair[1])
}

parse_bool_false(value) if {
	word := parse_bool_false_words[_]
	value == word
}

# strconv.ParseBool's false spellings.
parse_bool_false_words := ["0", "f", "F", "false", "FALSE", "False"]
