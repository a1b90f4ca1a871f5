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
	name := masking_fields[_]
	values := hc_any(name)
	value := values[_]
	is_array(value)
	msg := concat("", ["unmasked_paths: a custom ", name, " list (--security-opt systempaths=unconfined) is not allowed"])
}
