# Rule swarm_changes of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# swarm_changes (docker_authz_deny_swarm_changes): a host that joins a swarm runs the tasks its
# managers schedule, and the daemon creates those containers without asking this plugin; a
# swarm initialised here hands out join tokens (GET /swarm) for managers elsewhere.
# ------------------------------------------------------------------------------------------
deny contains msg if {
	swarm_ops[op]
	msg := concat("", ["swarm_changes: ", input.Method, " ", path_plain, " changes this host's swarm membership or configuration, which this host manages with Ansible"])
}

swarm_ops := {"swarm_init": true, "swarm_join": true, "swarm_leave": true, "swarm_update": true, "swarm_unlock": true, "node_update": true, "node_delete": true}
