# Rule ports (docker_authz_restrict_ports) of the hardening.docker_authz policy (docs/policy.md);
# uses lib.rego. Host port ranges, host IPs, --publish-all. An empty HostPort is a free port
# the daemon picks from the ephemeral range 32768-60999; an empty HostIp means every interface
# (0.0.0.0).
package docker.authz

import rego.v1
import data.docker.authz.config

deny contains msg if {
	binding := port_bindings[_]
	not port_allowed(binding[1])
	msg := concat("", ["ports: host port ", port_text(binding[1]), " is outside the allowed ranges (", config.allowed_host_ports_text, ")"])
}

deny contains msg if {
	count(config.allowed_host_ips) > 0
	binding := port_bindings[_]
	ip := host_ip(binding[0])
	not config.allowed_host_ips[ip]
	msg := concat("", ["ports: publishing on host IP ", ip, " is not allowed (an empty IP means all interfaces)"])
}

deny contains "ports: publishing every exposed port (--publish-all) is not allowed" if {
	creating
	body_levels[_].publishallports == true
}

# [HostIp, HostPort] of every binding in HostConfig.PortBindings (and the top-level copy).
port_bindings := bindings if {
	creating
	bindings := {[host_ip, host_port] |
		prefix := hc_prefixes[_]
		base := array.concat(prefix, ["portbindings"])
		ports := field(base)
		is_object(ports)
		list := ports[container_port]
		is_array(list)
		list[i]
		port_key := fold(container_port)
		host_ip := field_string(array.concat(base, [port_key, i, "hostip"]))
		host_port := field_string(array.concat(base, [port_key, i, "hostport"]))
	}
}

port_allowed(spec) if {
	span_allowed(port_span(spec))
}

span_allowed(span) if {
	allowed := config.allowed_host_ports[_]
	allowed[0] <= span[0]
	span[1] <= allowed[1]
}

# "" or "0": the ephemeral range; "8080" or "8000-8100": that range (digits only).
port_span(spec) := [32768, 60999] if {
	trim(spec, "0") == ""
}

port_span(spec) := [low, high] if {
	trim(spec, "0") != ""
	parts := split(spec, "-")
	count(parts) <= 2
	count([part | part := parts[_]; part != ""; trim(part, "0123456789") == ""]) == count(parts)
	low := to_number(parts[0])
	high := to_number(parts[count(parts) - 1])
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

# Services: EndpointSpec.Ports; both publish modes (ingress, host) listen on every interface.
deny contains msg if {
	span := service_published_spans[_]
	not span_allowed(span)
	msg := concat("", ["ports: a service publishes ports ", format_int(span[0], 10), "-", format_int(span[1], 10), ", outside the allowed ranges (", config.allowed_host_ports_text, ")"])
}

deny contains "ports: services publish on every interface, and docker_authz_allowed_host_ips restricts the host IPs" if {
	count(config.allowed_host_ips) > 0
	count(service_published_spans) > 0
}

service_published_spans := spans if {
	service_spec
	ports := field(["endpointspec", "ports"])
	is_array(ports)
	spans := {span | ports[i]; span := service_port_span(i)}
}

# PublishedPort 0, or none (the CLI leaves it out for "-p 80"), is a port swarm picks from
# 30000-32767.
service_port_span(i) := [port, port] if {
	port := service_port(i)
}

service_port_span(i) := [30000, 32767] if {
	not service_port(i)
}

service_port(i) := port if {
	port := field(["endpointspec", "ports", i, "publishedport"])
	is_number(port)
	port != 0
}
