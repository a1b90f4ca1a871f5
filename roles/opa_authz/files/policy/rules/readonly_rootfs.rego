# Rule readonly_rootfs of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# readonly_rootfs (docker_authz_require_readonly_rootfs)
# ------------------------------------------------------------------------------------------
deny contains "readonly_rootfs: containers must use a read-only root filesystem (--read-only)" if {
	creating
	not hc("readonlyrootfs") == true
}

deny contains "readonly_rootfs: services must use a read-only root filesystem (--read-only)" if {
	service_spec
	not field(service_path(["readonly"])) == true
}
