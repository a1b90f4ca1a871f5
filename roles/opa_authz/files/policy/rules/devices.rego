# Rule devices of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# devices (docker_authz_deny_devices)
# ------------------------------------------------------------------------------------------
device_fields := ["devices", "devicecgrouprules"]

deny contains msg if {
	creating
	name := device_fields[_]
	values := hc_any(name)
	value := values[_]
	is_array(value)
	count(value) > 0
	msg := concat("", ["devices: host devices (", name, ") are not allowed"])
}
