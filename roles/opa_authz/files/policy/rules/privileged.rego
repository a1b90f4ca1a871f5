# Rule privileged of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# privileged (docker_authz_deny_privileged)
# ------------------------------------------------------------------------------------------
deny contains "privileged: privileged containers are not allowed (--privileged)" if {
	creating
	body_levels[_].privileged == true
}

deny contains "privileged: privileged exec is not allowed (docker exec --privileged)" if {
	exec_creating
	field(["privileged"]) == true
}
