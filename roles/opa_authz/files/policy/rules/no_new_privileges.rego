# Rule no_new_privileges of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# no_new_privileges (docker_authz_require_no_new_privileges): the last no-new-privileges
# option decides, as in the daemon.
# ------------------------------------------------------------------------------------------
deny contains "no_new_privileges: containers must run with --security-opt no-new-privileges" if {
	creating
	not no_new_privileges_set
}

# Services: ContainerSpec.Privileges.NoNewPrivileges (API 1.46, Docker 27). On older engines a
# service cannot ask for it, so its tasks would run without it: denied.
deny contains "no_new_privileges: services must set Privileges.NoNewPrivileges (API 1.46 and later; older engines cannot)" if {
	service_spec
	not service_no_new_privileges_set
}

nnp_settings := settings if {
	opts := hc("securityopt")
	is_array(opts)
	settings := [setting | opt := opts[_]; is_string(opt); pair := split_opt(opt); pair[0] == "no-new-privileges"; setting := nnp_setting(pair[1])]
}

nnp_setting(value) := true if {
	value == ""
}

nnp_setting(value) := true if {
	lowered := lower(value)
	true_words[lowered]
}

nnp_setting(value) := false if {
	value != ""
	lowered := lower(value)
	not true_words[lowered]
}

true_words := {"1": true, "t": true, "true": true}

no_new_privileges_set if {
	settings := nnp_settings
	last := count(settings) - 1
	settings[last] == true
}

service_no_new_privileges_set if {
	field(service_path(["privileges", "nonewprivileges"])) == true
}

# The daemon clears a service's NoNewPrivileges (and its Seccomp and AppArmor settings) when the
# path's API version is below 1.44 (adjustForAPIVersion in daemon/server/router/swarm/helpers.go),
# after the policy saw it true. A path without a version is the daemon's own, new enough.
deny contains "no_new_privileges: services sent to an API version below 1.44 lose Privileges.NoNewPrivileges (the daemon clears it): use /v1.44 or later" if {
	service_spec
	api_below(1, 44)
}
