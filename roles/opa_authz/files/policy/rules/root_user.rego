# Rule root_user of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# root_user (docker_authz_deny_root_user): "", "root", "0", "0:0", "root:x" (and +0, 00).
# An empty exec user runs as the container's user: allowed.
# ------------------------------------------------------------------------------------------
root_user(user) if {
	parts := split(user, ":")
	name := trim(parts[0], " ")
	root_name(name)
}

root_name(name) if {
	name == ""
}

root_name(name) if {
	name == "root"
}

root_name(name) if {
	name != ""
	trim(name, "+-0") == ""
}

non_root_create_user if {
	user := field(["user"])
	is_string(user)
	not root_user(user)
}

deny contains "root_user: containers must run as a non-root user (--user); the image default is usually root" if {
	creating
	not non_root_create_user
}

deny contains "root_user: services must run as a non-root user (--user); the image default is usually root" if {
	service_spec
	not non_root_service_user
}

non_root_service_user if {
	user := field(service_path(["user"]))
	is_string(user)
	not root_user(user)
}

deny contains "root_user: exec as root is not allowed (docker exec --user root or 0)" if {
	exec_creating
	user := field(["user"])
	is_string(user)
	user != ""
	root_user(user)
}
