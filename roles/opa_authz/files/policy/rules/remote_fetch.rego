# Rule remote_fetch of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1

# ------------------------------------------------------------------------------------------
# remote_fetch (docker_authz_deny_remote_fetch): the daemon itself downloads an import's
# fromSrc (any value but "-": "host/x.tar" is read as http://host/x.tar) and a build's remote
# (a git repository or any URL; "client-session" is the CLI's own context) from the host's
# network position: cloud metadata, services bound to the host's loopback. Every value of a
# repeated parameter is judged (the daemon takes the first).
# ------------------------------------------------------------------------------------------
fetch_free_values := {"fromSrc": {"-": true, "": true}, "remote": {"": true, "client-session": true}}

fetch_params := {"image_create": "fromSrc", "build": "remote"}

deny contains msg if {
	name := fetch_params[op]
	value := query_values(name)[_]
	not fetch_free_values[name][value]
	msg := concat("", ["remote_fetch: ", name, "=", value, " makes the daemon download from the host's network (send the content in the request body instead)"])
}
