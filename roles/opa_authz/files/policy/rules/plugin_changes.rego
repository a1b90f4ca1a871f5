# Rule plugin_changes of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# plugin_changes (docker_authz_deny_plugin_changes): disabling the authorization plugin
# through the API would switch enforcement off.
# ------------------------------------------------------------------------------------------
deny contains msg if {
	startswith(op, "plugin_")
	msg := concat("", ["plugin_changes: ", input.Method, " ", path_plain, " changes Docker plugins, which this host manages with Ansible"])
}

deny contains "plugin_changes: services that install plugins (TaskTemplate.Runtime plugin) are not allowed" if {
	service_spec
	swarm_plugin_service
}

swarm_plugin_service if {
	runtime := field(["tasktemplate", "runtime"])
	is_string(runtime)
	lower(runtime) == "plugin"
}

swarm_plugin_service if {
	is_object(field(["tasktemplate", "pluginspec"]))
}
