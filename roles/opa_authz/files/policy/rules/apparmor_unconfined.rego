# Rule apparmor_unconfined of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

deny contains "apparmor_unconfined: --security-opt apparmor=unconfined is not allowed" if {
	pairs := security_opts
	pair := pairs[_]
	pair[0] == "apparmor"
	lower(pair[1]) == "unconfined"
}

deny contains "apparmor_unconfined: services with AppArmor disabled are not allowed" if {
	service_spec
	mode := field(service_path(["privileges", "apparmor", "mode"]))
	is_string(mode)
	lower(mode) == "disabled"
}
