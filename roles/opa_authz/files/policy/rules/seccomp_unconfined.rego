# Rule seccomp_unconfined of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# seccomp_unconfined, apparmor_unconfined, selinux_disabled (--security-opt; service Privileges)
# ------------------------------------------------------------------------------------------
deny contains "seccomp_unconfined: --security-opt seccomp=unconfined is not allowed" if {
	pairs := security_opts
	pair := pairs[_]
	pair[0] == "seccomp"
	lower(pair[1]) == "unconfined"
}

# A seccomp profile (the CLI sends the file's JSON) whose default action allows every call.
deny contains "seccomp_unconfined: a seccomp profile whose defaultAction allows every system call is not allowed" if {
	pairs := security_opts
	pair := pairs[_]
	pair[0] == "seccomp"
	seccomp_allows_all(pair[1])
}

seccomp_allows_all(text) if {
	action := seccomp_default_action(text)
	allow_all_seccomp_actions[action]
}

# The upper-cased defaultAction of a JSON seccomp profile.
seccomp_default_action(text) := upper_action if {
	startswith(trim(text, " \t\r\n"), "{")
	profile := json.unmarshal(text)
	is_object(profile)
	action := profile[name]
	fold(name) == "defaultaction"
	is_string(action)
	upper_action := upper(trim(action, " "))
}

allow_all_seccomp_actions := {"SCMP_ACT_ALLOW": true, "SCMP_ACT_LOG": true}

# Any other value the daemon loads as a JSON profile, and a profile with neither a default action
# nor system calls means no seccomp at all (moby's setupSeccomp): "{}", "null", {"defaultAction": ""}.
# So a profile must be a JSON object that names a default action.
deny contains "seccomp_unconfined: a seccomp profile must be a JSON object with a defaultAction (one without it switches seccomp off)" if {
	pairs := security_opts
	pair := pairs[_]
	pair[0] == "seccomp"
	not seccomp_keywords[pair[1]]
	not seccomp_profile_with_default(pair[1])
}

# "" (the default profile), "builtin" (the daemon's default profile) and "unconfined" (its own rule)
seccomp_keywords := {"": true, "builtin": true, "unconfined": true}

seccomp_profile_with_default(text) if {
	seccomp_default_action(text) != ""
}

deny contains "seccomp_unconfined: services with seccomp unconfined are not allowed" if {
	service_spec
	mode := field(service_path(["privileges", "seccomp", "mode"]))
	is_string(mode)
	lower(mode) == "unconfined"
}

# Mode "custom" (API 1.44+) hands the daemon Profile (base64 JSON) as seccomp=<profile>.
deny contains "seccomp_unconfined: a custom seccomp profile of a service must name a defaultAction that does not allow every system call" if {
	service_spec
	mode := field(service_path(["privileges", "seccomp", "mode"]))
	is_string(mode)
	lower(mode) == "custom"
	not service_seccomp_profile_ok
}

service_seccomp_profile_ok if {
	encoded := field(service_path(["privileges", "seccomp", "profile"]))
	is_string(encoded)
	text := base64.decode(encoded)
	seccomp_profile_with_default(text)
	not seccomp_allows_all(text)
}
