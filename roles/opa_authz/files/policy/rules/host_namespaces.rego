# Rule host_namespaces of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# host_namespaces (docker_authz_deny_host_namespaces)
# ------------------------------------------------------------------------------------------
namespace_fields := ["networkmode", "pidmode", "ipcmode", "utsmode", "usernsmode", "cgroupnsmode"]

deny contains msg if {
	creating
	names := {name | name := namespace_fields[_]; value := body_levels[_][name]; is_string(value); lower(value) == "host"}
	name := names[_]
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

# Networks that put containers on the host's own network position: macvlan and ipvlan (on a
# host interface, "parent"), and bridges whose gateway mode publishes container ports without
# port mappings (Docker 27+: routed, nat-unprotected), past the ports rule. Any network create,
# config-only ones included (a network made --config-from one takes its options).
deny contains msg if {
	op == "network_create"
	driver := lower(field_string(["driver"]))
	word := host_network_drivers[_]
	driver == word
	msg := concat("", ["host_namespaces: ", word, " networks (containers directly on a host interface) are not allowed"])
}

deny contains msg if {
	op == "network_create"
	key := gateway_mode_options[_]
	mode := lower(field_string(["options", key]))
	word := open_gateway_modes[_]
	mode == word
	msg := concat("", ["host_namespaces: bridge gateway mode ", word, " (", key, ": container ports reachable without publishing) is not allowed"])
}

host_network_drivers := ["macvlan", "ipvlan"]

gateway_mode_options := ["com.docker.network.bridge.gateway_mode_ipv4", "com.docker.network.bridge.gateway_mode_ipv6"]

open_gateway_modes := ["routed", "nat-unprotected"]
