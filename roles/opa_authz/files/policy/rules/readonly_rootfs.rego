# Rule readonly_rootfs of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# readonly_rootfs (docker_authz_require_readonly_rootfs)
# ------------------------------------------------------------------------------------------
deny contains "readonly_rootfs: containers must use a read-only root filesystem (--read-only)" if {
	creating
	not readonly_rootfs_set
}

deny contains "readonly_rootfs: services must use a read-only root filesystem (--read-only)" if {
	service_spec
	not service_readonly_set
}

readonly_rootfs_set if {
	hc("readonlyrootfs") == true
}

service_readonly_set if {
	field(service_path(["readonly"])) == true
}
