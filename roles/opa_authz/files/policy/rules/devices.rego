# Rule devices of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# devices (docker_authz_deny_devices)
# ------------------------------------------------------------------------------------------
# DeviceRequests: --gpus (driver nvidia or empty, capabilities gpu: the NVIDIA hook adds
# /dev/nvidia* and driver libraries) and CDI (driver cdi, DeviceIDs vendor/class=name; a CDI
# spec can add device nodes, mounts and hooks).
device_fields := ["devices", "devicecgrouprules", "devicerequests"]

deny contains msg if {
	creating
	names := {name | name := device_fields[_]; value := body_levels[_][name]; is_array(value); count(value) > 0}
	name := names[_]
	msg := concat("", ["devices: host devices (", name, ") are not allowed"])
}
