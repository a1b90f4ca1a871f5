# Rule ports of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1
import data.docker.authz.config

digits(text) if {
	text != ""
	trim(text, "0123456789") == ""
}

# ------------------------------------------------------------------------------------------
# ports (docker_authz_restrict_ports): host port ranges, host IPs, --publish-all.
# An empty HostPort is a free port the daemon picks from the ephemeral range 32768-60999;
# an empty HostIp means every interface (0.0.0.0).
# ------------------------------------------------------------------------------------------
port_bindings := bindings if {
	creating
	bindings := {[host_ip, host_port] |
		prefix := hc_prefixes[_]
		base := array.concat(prefix, ["portbindings"])
		ports := field(base)
		is_object(ports)
		list := ports[container_port]
		is_array(list)
		entry := list[i]
		port_key := fold(container_port)
		host_ip := field_string(array.concat(base, [port_key, i, "hostip"]))
		host_port := field_string(array.concat(base, [port_key, i, "hostport"]))
	}
}

port_span(spec) := [32768, 60999] if {
	trim(spec, "0") == ""
}

port_span(spec) := span if {
	trim(spec, "0") != ""
	digits(spec)
	number := to_number(spec)
	span := [number, number]
}

port_span(spec) := span if {
	parts := split(spec, "-")
	count(parts) == 2
	digits(parts[0])
	digits(parts[1])
	low := to_number(parts[0])
	high := to_number(parts[1])
	span := [low, high]
}

port_allowed(spec) if {
	span := port_span(spec)
	span_allowed(span)
}

span_allowed(span) if {
	allowed := config.allowed_host_ports[_]
	allowed[0] <= span[0]
	span[1] <= allowed[1]
}

# Services: EndpointSpec.Ports. PublishedPort 0 (or none) is a port swarm picks from
# 30000-32767; both publish modes (ingress, host) listen on every interface.
service_published_spans := spans if {
	service_spec
	ports := field(["endpointspec", "ports"])
	is_array(ports)
	spans := {span | ports[i]; span := service_port_span(service_published_port(i))}
}

# The CLI leaves PublishedPort out for "-p 80" (omitempty): absent is 0, a port swarm picks.
service_published_port(i) := port if {
	port := field(["endpointspec", "ports", i, "publishedport"])
	is_number(port)
}

service_published_port(i) := 0 if {
	not service_port_number(i)
}

service_port_number(i) if {
	is_number(field(["endpointspec", "ports", i, "publishedport"]))
}

service_port_span(port) := [30000, 32767] if {
	port == 0
}

service_port_span(port) := [port, port] if {
	port != 0
}

deny contains msg if {
	spans := service_published_spans
	span := spans[_]
	not span_allowed(span)
	msg := concat("", ["ports: a service publishes ports ", format_int(span[0], 10), "-", format_int(span[1], 10), ", outside the allowed ranges (", config.allowed_host_ports_text, ")"])
}

deny contains "ports: services publish on every interface, and docker_authz_allowed_host_ips restricts the host IPs" if {
	count(config.allowed_host_ips) > 0
	spans := service_published_spans
	count(spans) > 0
}

deny contains msg if {
	bindings := port_bindings
	binding := bindings[_]
	not port_allowed(binding[1])
	msg := concat("", ["ports: host port ", port_text(binding[1]), " is outside the allowed ranges (", config.allowed_host_ports_text, ")"])
}

port_text(spec) := "(any free port)" if {
	spec == ""
}

port_text(spec) := spec if {
	spec != ""
}

host_ip(ip) := "0.0.0.0" if {
	ip == ""
}

host_ip(ip) := ip if {
	ip != ""
}

deny contains msg if {
	count(config.allowed_host_ips) > 0
	bindings := port_bindings
	binding := bindings[_]
	ip := host_ip(binding[0])
	not config.allowed_host_ips[ip]
	msg := concat("", ["ports: publishing on host IP ", ip, " is not allowed (an empty IP means all interfaces)"])
}

deny contains "ports: publishing every exposed port (--publish-all) is not allowed" if {
	creating
	values := hc_any("publishallports")
	values[true]
}
