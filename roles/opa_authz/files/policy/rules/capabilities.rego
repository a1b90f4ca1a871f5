# Rule capabilities of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1
import data.docker.authz.config

# ------------------------------------------------------------------------------------------
# Value normalisation helpers.
# ------------------------------------------------------------------------------------------
as_list(value) := list if {
	is_array(value)
	list := value
}

as_list(value) := list if {
	is_string(value)
	list := [value]
}

# "CAP_SYS_ADMIN", "cap_sys_admin" and "sys_admin" are all SYS_ADMIN.
normalize_cap(name) := cap if {
	upper_name := upper(trim(name, " "))
	startswith(upper_name, "CAP_")
	cap := substring(upper_name, 4, count(upper_name) - 4)
}

normalize_cap(name) := cap if {
	cap := upper(trim(name, " "))
	not startswith(cap, "CAP_")
}

# ------------------------------------------------------------------------------------------
# capabilities (docker_authz_deny_added_capabilities): CapAdd is a string or a list.
# ------------------------------------------------------------------------------------------
added_capabilities := caps if {
	creating
	# HostConfig.Capabilities (API 1.40) replaced the default set: every entry counts as added.
	caps := {cap | key := capability_fields[_]; value := body_levels[_][key]; names := as_list(value); name := names[_]; is_string(name); cap := normalize_cap(name)}
}

capability_fields := ["capadd", "capabilities"]

added_capabilities := caps if {
	service_spec
	names := field(service_path(["capabilityadd"]))
	is_array(names)
	caps := {cap | name := names[_]; is_string(name); cap := normalize_cap(name)}
}

deny contains "capabilities: adding ALL capabilities is not allowed" if {
	caps := added_capabilities
	caps["ALL"]
}

deny contains msg if {
	caps := added_capabilities
	cap := caps[_]
	cap != "ALL"
	not config.allowed_capabilities[cap]
	msg := concat("", ["capabilities: adding capability ", cap, " is not allowed"])
}
