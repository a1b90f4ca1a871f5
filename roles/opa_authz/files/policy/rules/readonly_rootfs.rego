# Rule readonly_rootfs of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1
import data.docker.authz.config

# ------------------------------------------------------------------------------------------
# readonly_rootfs (docker_authz_require_readonly_rootfs)
# ------------------------------------------------------------------------------------------
deny contains "readonly_rootfs: containers must use a read-only root filesystem (--read-only)" if {
	config.rules.readonly_rootfs
	creating
	not hc("readonlyrootfs") == true
}

deny contains "readonly_rootfs: services must use a read-only root filesystem (--read-only)" if {
	config.rules.readonly_rootfs
	service_spec
	not field(service_path(["readonly"])) == true
}
