# Rule host_namespaces of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# host_namespaces (docker_authz_deny_host_namespaces)
# ------------------------------------------------------------------------------------------
namespace_fields := ["networkmode", "pidmode", "ipcmode", "utsmode", "usernsmode", "cgroupnsmode"]

deny contains msg if {
	creating
	name := namespace_fields[_]
	values := hc_any(name)
	value := values[_]
	is_string(value)
	lower(value) == "host"
	msg := concat("", ["host_namespaces: ", name, " host is not allowed (it shares the host's namespace)"])
}

deny contains "host_namespaces: services on the host network are not allowed" if {
	service_spec
	bases := [["tasktemplate", "networks"], ["networks"]]
	base := bases[_]
	networks := field(base)
	is_array(networks)
	entry := networks[i]
	target := field(array.concat(base, [i, "target"]))
	is_string(target)
	lower(target) == "host"
}

deny contains "host_namespaces: builds with --network host are not allowed" if {
	op == "build"
	values := query_values("networkmode")
	value := values[_]
	is_string(value)
	lower(value) == "host"
}

# A create sent to a path below /v1.41 without CgroupnsMode gets the host's cgroup namespace on
# cgroup v1 hosts (container_routes.go); only an explicit private mode is safe there.
deny contains "host_namespaces: containers created through API 1.40 or older must set CgroupnsMode private (the daemon's default there is the host's cgroup namespace on cgroup v1)" if {
	creating
	api_below(1, 41)
	not cgroupns_private
}

cgroupns_private if {
	hc("cgroupnsmode") == "private"
}
