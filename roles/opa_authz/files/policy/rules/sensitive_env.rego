# Rule sensitive_env of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1
import data.docker.authz.config

# ------------------------------------------------------------------------------------------
# sensitive_env (docker_authz_deny_sensitive_env)
# ------------------------------------------------------------------------------------------
env_paths := {
	"container_create": ["env"],
	"exec_create": ["env"],
	"service_create": ["tasktemplate", "containerspec", "env"],
	"service_update": ["tasktemplate", "containerspec", "env"],
}

env_names := names if {
	path := env_paths[op]
	entries := field(path)
	is_array(entries)
	names := {name | entry := entries[_]; is_string(entry); parts := split(entry, "="); name := parts[0]}
}

env_allowed(name) if {
	pattern := config.sensitive_env_allowed[_]
	pattern.exact
	name == pattern.prefix
}

env_allowed(name) if {
	pattern := config.sensitive_env_allowed[_]
	not pattern.exact
	startswith(name, pattern.prefix)
	endswith(name, pattern.suffix)
	count(name) >= count(pattern.prefix) + count(pattern.suffix)
}

deny contains msg if {
	names := env_names
	name := names[_]
	lowered := lower(name)
	keyword := config.sensitive_env_keywords[_]
	contains(lowered, keyword)
	not env_allowed(lowered)
	msg := concat("", ["sensitive_env: environment variable ", name, " looks like a secret (", keyword, "); pass a file (*_FILE) or a Docker secret instead"])
}
