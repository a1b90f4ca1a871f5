# Rule log_drivers of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1
import data.docker.authz.config

# ------------------------------------------------------------------------------------------
# log_drivers (docker_authz_restrict_log_drivers): a log driver runs in the daemon with the
# host's identity and network position: awslogs and gcplogs write with the daemon's cloud
# credentials, syslog, gelf, fluentd and splunk send to any address (host unix sockets too),
# a log driver plugin is any code. HostConfig.LogConfig.Type (either place, as hc_any) and a
# service's TaskTemplate.LogDriver.Name must be in docker_authz_allowed_log_drivers; empty is
# the daemon's default driver. The daemon looks names up exactly.
# ------------------------------------------------------------------------------------------
log_driver_names := names if {
	creating
	names := {value | log_config := body_levels[_].logconfig; value := child(log_config, "type")}
}

log_driver_names := names if {
	service_spec
	names := {value | value := field(["tasktemplate", "logdriver", "name"])}
}

deny contains msg if {
	value := log_driver_names[_]
	is_string(value)
	value != ""
	not config.allowed_log_drivers[value]
	msg := concat("", ["log_drivers: log driver ", value, " is not in docker_authz_allowed_log_drivers"])
}
