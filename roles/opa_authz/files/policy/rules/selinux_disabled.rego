# Rule selinux_disabled of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

deny contains "selinux_disabled: --security-opt label=disable is not allowed" if {
	pairs := security_opts
	pair := pairs[_]
	pair[0] == "label"
	lower(pair[1]) == "disable"
}

deny contains "selinux_disabled: --security-opt label=disable is not allowed" if {
	pairs := security_opts
	pair := pairs[_]
	pair[0] == "disable"
}

deny contains "selinux_disabled: services with SELinux labeling disabled are not allowed" if {
	service_spec
	field(service_path(["privileges", "selinuxcontext", "disable"])) == true
}
