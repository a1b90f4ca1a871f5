# Rule devices of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1
import data.docker.authz.config

# ------------------------------------------------------------------------------------------
# devices (docker_authz_deny_devices)
# ------------------------------------------------------------------------------------------
device_fields := ["devices", "devicecgrouprules"]

deny contains msg if {
	config.rules.devices
	creating
	name := device_fields[_]
	values := hc_any(name)
	value := values[_]
	is_array(value)
	count(value) > 0
	msg := concat("", ["devices: host devices (", name, ") are not allowed"])
}
