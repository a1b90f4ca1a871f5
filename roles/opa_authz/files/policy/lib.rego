# Shared library of the hardening.docker_authz policy: the decision, the request (method,
# path, endpoint), the body normalised once, and helpers several rules use. Each rule
# lives in rules/<rule id>.rego; the role ships only the rules that are on.
package docker.authz

import rego.v1
import data.docker.authz.config

# ------------------------------------------------------------------------------------------
# Decision. Default deny: allow only when no rule objects, which includes the request being
# understood (a read, or a write to an endpoint this policy knows, with a visible body where
# the body matters and no ambiguous keys).
# ------------------------------------------------------------------------------------------
default allow := false

allow if {
	count(deny) == 0
}

# Users named in docker_authz_exempt_users (the CN of a TLS client certificate; input.User
# is empty on the unix socket, and request headers prove nothing) are allowed everything.
allow if {
	exempt_user
}

# A rule is on when its file is part of the policy (the role ships only those). In a bundle the
# configuration is a data file: a bundle without it denies everything rather than guess.
deny contains "policy: the configuration data.docker.authz.config is missing (the bundle's docker/authz/data.json)" if {
	not configured
}

# OPA evaluates the arguments of a call before a `not` (`not is_string(input.X)` is undefined,
# not true, when input.X is absent), so every negated test here is a rule or a call on bound
# values.
configured if {
	is_object(config.rules)
}

exempt_user if {
	is_string(input.User)
	input.User != ""
	config.exempt_users[input.User]
}

# ------------------------------------------------------------------------------------------
# The request: method, path (with or without /vX.Y), endpoint.
# ------------------------------------------------------------------------------------------
deny contains "input: the input has no Method; this policy expects the input opa-docker-authz builds" if {
	not has_method
}

has_method if {
	is_string(input.Method)
}

deny contains "input: the input has neither PathPlain nor Path; this policy expects the input opa-docker-authz builds" if {
	not path_plain
}

# The decoded path without the query. opa-docker-authz sends PathPlain; the oldest plugin
# versions only send the raw Path, which is decoded here.
path_plain := p if {
	p := input.PathPlain
	is_string(p)
}

has_path_plain if {
	is_string(input.PathPlain)
}

path_plain := p if {
	not has_path_plain
	is_string(input.Path)
	halves := split(input.Path, "?")
	p := urlquery.decode(halves[0])
}

reading if {
	read_methods[input.Method]
}

read_methods := {"GET": true, "HEAD": true}

raw_segments := segments if {
	parts := split(path_plain, "/")
	segments := [part | part := parts[_]; part != ""]
}

# "/v1.41/containers/create" and "/containers/create" are the same endpoint.
versioned if {
	first := raw_segments[0]
	startswith(first, "v")
	number := substring(first, 1, count(first) - 1)
	number != ""
	trim(number, "0123456789.") == ""
}

segments := rest if {
	versioned
	rest := [part | part := raw_segments[i]; i > 0]
}

segments := rest if {
	not versioned
	rest := raw_segments
}

# Every Docker Engine API write this policy understands, keyed "METHOD path" where "*"
# stands for an ID or a name (one or more segments: image and plugin names contain "/"). A
# write that matches nothing is denied.
write_endpoints := {
	"POST auth": "auth",
	"POST build": "build",
	"POST build/prune": "build_prune",
	"POST build/cancel": "build_cancel",
	"POST commit": "commit",
	"POST configs/create": "config_create",
	"POST configs/*/update": "config_update",
	"DELETE configs/*": "config_delete",
	"POST containers/create": "container_create",
	"POST containers/prune": "containers_prune",
	"DELETE containers/*": "container_delete",
	"POST containers/*/attach": "container_attach",
	"POST containers/*/exec": "exec_create",
	"POST containers/*/kill": "container_kill",
	"POST containers/*/pause": "container_pause",
	"POST containers/*/rename": "container_rename",
	"POST containers/*/resize": "container_resize",
	"POST containers/*/restart": "container_restart",
	"POST containers/*/start": "container_start",
	"POST containers/*/stop": "container_stop",
	"POST containers/*/unpause": "container_unpause",
	"POST containers/*/update": "container_update",
	"POST containers/*/wait": "container_wait",
	"PUT containers/*/archive": "container_archive",
	"POST exec/*/start": "exec_start",
	"POST exec/*/resize": "exec_resize",
	"POST grpc": "grpc",
	"POST images/create": "image_create",
	"POST images/load": "image_load",
	"POST images/prune": "images_prune",
	"POST images/*/push": "image_push",
	"POST images/*/tag": "image_tag",
	"DELETE images/*": "image_delete",
	"POST networks/create": "network_create",
	"POST networks/prune": "networks_prune",
	"POST networks/*/connect": "network_connect",
	"POST networks/*/disconnect": "network_disconnect",
	"DELETE networks/*": "network_delete",
	"POST nodes/*/update": "node_update",
	"DELETE nodes/*": "node_delete",
	"POST plugins/pull": "plugin_pull",
	"POST plugins/create": "plugin_create",
	"POST plugins/*/enable": "plugin_enable",
	"POST plugins/*/disable": "plugin_disable",
	"POST plugins/*/push": "plugin_push",
	"POST plugins/*/set": "plugin_set",
	"POST plugins/*/upgrade": "plugin_upgrade",
	"DELETE plugins/*": "plugin_remove",
	"POST secrets/create": "secret_create",
	"POST secrets/*/update": "secret_update",
	"DELETE secrets/*": "secret_delete",
	"POST services/create": "service_create",
	"POST services/*/update": "service_update",
	"DELETE services/*": "service_delete",
	"POST session": "session",
	"POST swarm/init": "swarm_init",
	"POST swarm/join": "swarm_join",
	"POST swarm/leave": "swarm_leave",
	"POST swarm/update": "swarm_update",
	"POST swarm/unlock": "swarm_unlock",
	"POST volumes/create": "volume_create",
	"POST volumes/prune": "volumes_prune",
	"PUT volumes/*": "volume_update",
	"DELETE volumes/*": "volume_delete",
}

# The keys a request can match, most specific first: the literal path, then
# "resource/*/action", then "resource/*".
endpoint_keys := keys if {
	count(segments) < 3
	keys := [concat(" ", [input.Method, concat("/", segments)]), concat("", [input.Method, " ", segments[0], "/*"])]
}

endpoint_keys := keys if {
	count(segments) >= 3
	last := count(segments) - 1
	keys := [concat("", [input.Method, " ", segments[0], "/*/", segments[last]]), concat("", [input.Method, " ", segments[0], "/*"])]
}

# The name of the write endpoint ("container_create", ...); reads need none.
op := name if {
	not reading
	keys := endpoint_keys
	names := [known | key := keys[_]; known := write_endpoints[key]]
	name := names[0]
}

creating if {
	op == "container_create"
}

exec_creating if {
	op == "exec_create"
}

updating if {
	op == "container_update"
}

service_spec if {
	op == "service_create"
}

service_spec if {
	op == "service_update"
}

deny contains msg if {
	is_string(input.Method)
	is_string(path_plain)
	not reading
	not op
	msg := concat("", ["request: ", input.Method, " ", path_plain, " is not a Docker API request this policy understands (unknown writes are denied)"])
}

# Query parameters (exact names, as the daemon reads them). Old plugins send no Query: it is
# parsed from the raw Path then.
has_query if {
	is_object(input.Query)
}

query_values(name) := values if {
	has_query
	values := input.Query[name]
	is_array(values)
}

query_values(name) := values if {
	not has_query
	is_string(input.Path)
	halves := split(input.Path, "?")
	count(halves) > 1
	pairs := split(halves[1], "&")
	values := [value | pair := pairs[_]; kv := split(pair, "="); urlquery.decode(kv[0]) == name; count(kv) > 1; value := urlquery.decode(concat("=", [x | x := kv[k]; k > 0]))]
}

# ------------------------------------------------------------------------------------------
# Bodies the policy cannot see or that the daemon reads differently.
# ------------------------------------------------------------------------------------------
body_endpoints := {
	"container_create": true, "exec_create": true, "container_update": true,
	"service_create": true, "service_update": true, "volume_create": true,
}

body_visible if {
	is_object(input.Body)
}

authenticating if {
	op == "auth"
}

content_types := types if {
	headers := input.Headers
	types := {lower(value) | value := headers[name]; lower(name) == "content-type"; is_string(value)}
}

# opa-docker-authz parses the body only for Content-Type exactly "application/json"; with
# "application/json; charset=utf-8" the daemon still acts on a body the policy never sees.
deny contains msg if {
	body_endpoints[op]
	not body_visible
	msg := concat("", ["body: the ", op, " request's body is not visible to the policy (send Content-Type exactly application/json)"])
}

# Any other write that declares a JSON body the policy cannot see (a charset suffix, or a
# body the daemon did not forward: chunked, empty Content-Length, over 1 MiB). The daemon
# never forwards the body of /auth (registry credentials), so login stays allowed.
deny contains msg if {
	not reading
	not body_visible
	not authenticating
	not null_body
	types := content_types
	ctype := types[_]
	contains(ctype, "json")
	msg := concat("", ["body: ", input.Method, " ", path_plain, " declares a JSON body (", ctype, ") that is not visible to the policy"])
}

# A body that IS the JSON document `null` (CLI 20.10's `docker commit` without --change sends
# a nil config so): the plugin hands it over as Body null, like a body it never got. Its
# Content-Length ("null" or "null\n") tells it apart from a body the daemon did not forward
# (chunked: no Content-Length; empty: 0; over the plugin limit: more than 1 MiB).
null_body if {
	input.Body == null
	lengths := {value | value := input.Headers[name]; lower(name) == "content-length"}
	count(lengths) > 0
	count(lengths - {"4", "5"}) == 0
}

# The daemon reads form bodies as request parameters (Go's ParseForm), invisible here.
deny contains msg if {
	not reading
	types := content_types
	ctype := types[_]
	form_content_type(ctype)
	msg := concat("", ["body: ", input.Method, " ", path_plain, " sends a form body (", ctype, ") whose parameters are not visible to the policy"])
}

form_content_type(ctype) if {
	startswith(ctype, "application/x-www-form-urlencoded")
}

form_content_type(ctype) if {
	startswith(ctype, "multipart/form-data")
}

# Old API versions (< 1.24) take a HostConfig on start; no current client sends a body.
deny contains "request: a body on POST /containers/{id}/start (host configuration at start, API < 1.24) is not allowed" if {
	op == "container_start"
	is_object(input.Body)
	count(input.Body) > 0
}

# ------------------------------------------------------------------------------------------
# The body, normalised once. The daemon decodes JSON keys case-insensitively at every depth
# (Go's encoding/json, which also folds U+017F "long s" to "s" and U+212A "Kelvin" to "k") while Rego
# compares keys exactly. Rules read the body with folded names through field(path), body_levels
# (a name at both places of a create) and hc(name):
# - body_top and body_hc: the top level and the HostConfig object, keyed by folded name;
# - body_fields: the folded path of every node of the body, as a JSON array string such as
#   ["hostconfig","binds",0], mapped to its value. Only paths three or more deep need it (a mount's
#   source, a port binding), so a request that sends none never walks its body for it.
# Keys that differ only in case with different values are ambiguous: denied (body_collisions).
# (The two literals in the folds are U+017F and U+212A themselves: not every engine decodes \u.)
# ------------------------------------------------------------------------------------------
fold(text) := folded if {
	folded := replace(replace(lower(text), "ſ", "s"), "K", "k")
}

path_key(path) := key if {
	key := fold(json.marshal(path))
}

# No two keys of one object fold alike, proven cheaply: the body's JSON folded as a whole is as
# long after it is decoded and encoded again (keys that fold alike would merge into one member and
# shorten it; decoding and encoding otherwise gives JSON of the same length back, the keys perhaps
# in another order). Both sides are the folded text, so a fold that changes the length of a value
# cannot make up for a merged member. Only a body that fails this is searched key by key
# (body_collisions).
no_folded_duplicates if {
	text := json.marshal(input.Body)
	folded := replace(replace(lower(text), "ſ", "s"), "K", "k")
	count(json.marshal(json.unmarshal(folded))) == count(folded)
}

# The paths of keys that fold alike and carry different values (the daemon merges them). A body
# that is null or absent has no keys to search.
body_collisions := keys if {
	input.Body != null
	not no_folded_duplicates
	keys := {key |
		walk(input.Body, [path, node])
		is_object(node)
		has_key_collision(node)
		value_a := node[name_a]
		value_b := node[name_b]
		name_a != name_b
		fold(name_a) == fold(name_b)
		value_a != value_b
		key := path_key(array.concat(path, [name_a]))
	}
}

has_key_collision(node) if {
	count({folded | value := node[name]; folded := replace(replace(lower(name), "ſ", "s"), "K", "k")}) != count(node)
}

unambiguous_body if {
	no_folded_duplicates
}

unambiguous_body if {
	count(body_collisions) == 0
}

deny contains msg if {
	keys := body_collisions
	key := keys[_]
	msg := concat("", ["body: keys that differ only in case carry different values at ", key, " (the daemon merges them); the request is ambiguous"])
}

# (The folds are written out in the comprehensions over every node and key of the body: a
# function call per node costs OPA more than the call's own work.)
body_top := fields if {
	fields := {key: value | unambiguous_body; body := input.Body; is_object(body); value := body[name]; key := replace(replace(lower(name), "ſ", "s"), "K", "k")}
}

body_hc := fields if {
	fields := {key: value | host_config := body_top.hostconfig; is_object(host_config); value := host_config[name]; key := replace(replace(lower(name), "ſ", "s"), "K", "k")}
}

body_fields := fields if {
	unambiguous_body
	fields := {key: value | walk(input.Body, [path, value]); key := replace(replace(lower(json.marshal(path)), "ſ", "s"), "K", "k")}
}

# path: lower-case names, then names and array indices; a name taken from the body must go
# through fold. The first two steps are always names.
field(path) := value if {
	count(path) == 1
	value := body_top[path[0]]
}

field(path) := value if {
	count(path) == 2
	path[0] == "hostconfig"
	value := body_hc[path[1]]
}

field(path) := value if {
	count(path) == 2
	first := path[0]
	first != "hostconfig"
	value := child(body_top[first], path[1])
}

field(path) := value if {
	count(path) > 2
	value := body_fields[json.marshal(path)]
}

# The value under a folded name in an object of the body, or at an index of an array.
child(node, name) := value if {
	is_object(node)
	value := node[key]
	fold(key) == name
}

child(node, index) := value if {
	is_array(node)
	value := node[index]
}

field_string(path) := value if {
	value := field(path)
	is_string(value)
}

field_string(path) := "" if {
	not field_is_string(path)
}

field_is_string(path) if {
	is_string(field(path))
}

# Create bodies: the daemon (ContainerConfigWrapper) also decodes HostConfig fields sent at
# the top level of the body, and applies them when no HostConfig object is sent. Deny rules
# look at both places (value := body_levels[_][name]: a direct lookup, cheaper in OPA than a
# function that collects the values); require rules at the effective one (hc).
hc_prefixes := [["hostconfig"], []]

body_levels := [body_hc, body_top]

has_host_config if {
	is_object(body_top.hostconfig)
}

hc(name) := value if {
	has_host_config
	value := body_hc[name]
}

hc(name) := value if {
	not has_host_config
	value := body_top[name]
}

service_path(rest) := path if {
	path := array.concat(["tasktemplate", "containerspec"], rest)
}

# --security-opt as the daemon splits it: KEY=VALUE, KEY:VALUE (old separator) or a bare word
# ("no-new-privileges", "disable"). The key is lower-cased. The separator is "=" when the option
# holds one, else ":" when it holds one; a bare word splits into [word, ""].
split_opt(opt) := pair if {
	separators := [sep | sep := opt_separators[_]; contains(opt, sep)]
	candidates := array.concat(separators, ["="])
	sep := candidates[0]
	parts := split(opt, sep)
	pair := [lower(parts[0]), concat(sep, [part | part := parts[i]; i > 0])]
}

opt_separators := ["=", ":"]

security_opts := pairs if {
	creating
	pairs := {pair | opts := body_levels[_].securityopt; is_array(opts); opt := opts[_]; is_string(opt); pair := split_opt(opt)}
}

# The API version of a versioned path as numbers ("/v1.40/..." -> 1 and 40), for the fields the
# daemon changes by version (adjustForAPIVersion). A path without a version is the daemon's own.
api_below(major, minor) if {
	parts := path_api_version
	parts[0] < major
}

api_below(major, minor) if {
	parts := path_api_version
	parts[0] == major
	parts[1] < minor
}

path_api_version := [major, minor] if {
	versioned
	parts := split(substring(raw_segments[0], 1, -1), ".")
	count(parts) > 1
	major := to_number(parts[0])
	minor := to_number(parts[1])
}
