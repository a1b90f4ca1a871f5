# Unit tests for the policy the role renders (roles/opa_authz/templates/authz.rego.j2).
# They hold for both profiles and any rule settings: rule-specific tests compare the decision
# with data.docker.authz.config, which is rendered from the role variables.
#
#   ansible-playbook playbooks/render_policy.yml -e @vars.yml -e docker_authz_render_dest=$PWD/authz.rego
#   opa test authz.rego authz_test.rego                 # Rego v1 policy (OPA 0.59+)
#   opa test --v0-compatible authz.rego authz_test.rego  # Rego v0 policy with OPA 1.x
#
# Every test_ rule is `outcome_ok(case) with input as case.input` for case := cases.NAME. Our suite
# (tests/policy/test_rego_unit.py) evaluates the same outcome_ok(cases.NAME) with regopy, with
# the case's input set as the input document (regopy 1.5.2 crashes on `with input as` over
# rules that depend on other rules, so it cannot run the test_ rules as written).
package docker.authz_test

import rego.v1

# ---- inputs, as opa-docker-authz builds them ---------------------------------------------
# The CLI sends Content-Type: application/json only with a body.
content_type(body) := {"Content-Type": "application/json"} if body != null

content_type(body) := {} if body == null

request(method, path, body) := {
	"Headers": content_type(body),
	"Path": path,
	"PathPlain": path,
	"PathArr": split(path, "/"),
	"Query": {},
	"Method": method,
	"Body": body,
	"User": "",
	"AuthMethod": "",
	"BindMounts": [],
}

read(path) := {
	"Headers": {},
	"Path": path,
	"PathPlain": path,
	"PathArr": split(path, "/"),
	"Query": {},
	"Method": "GET",
	"Body": null,
	"User": "",
	"AuthMethod": "",
	"BindMounts": [],
}

# A create that every profile allows (the restricted profile's requirements met).
compliant_host_config := {
	"Memory": 67108864,
	"NanoCpus": 500000000,
	"PidsLimit": 100,
	"SecurityOpt": ["no-new-privileges"],
	"CapDrop": ["ALL"],
	"ReadonlyRootfs": true,
}

create(extra_config, extra_host_config) := request("POST", "/v1.41/containers/create", body) if {
	host_config := object.union(compliant_host_config, extra_host_config)
	body := object.union({"Image": "busybox", "User": "1000:1000", "Cmd": ["sleep", "60"], "HostConfig": host_config}, extra_config)
}

# A swarm service that every profile allows (API 1.46: Privileges.NoNewPrivileges exists).
service(extra_spec) := request("POST", "/v1.46/services/create", body) if {
	spec := object.union({"Image": "busybox", "User": "1000:1000", "ReadOnly": true, "Privileges": {"NoNewPrivileges": true}}, extra_spec)
	limits := {"MemoryBytes": 67108864, "NanoCPUs": 500000000, "Pids": 100}
	body := {"Name": "svc", "TaskTemplate": {"ContainerSpec": spec, "Resources": {"Limits": limits}}}
}

# The reasons of a deny that name the rule. Iterating deny[reason] works whether deny is a set
# (OPA) or an object of reason: true (regopy's view of a v0 partial set).
hits(deny, rule) := {reason | deny[reason]; startswith(reason, concat("", [rule, ":"]))}

# expect: "allow", "deny", or "rule" (denied by that rule exactly when config.rules[rule] is on).
outcome_ok(case) if {
	case.expect == "allow"
	data.docker.authz.allow == true
}

outcome_ok(case) if {
	case.expect == "deny"
	data.docker.authz.allow == false
}

outcome_ok(case) if {
	case.expect == "rule"
	enabled := data.docker.authz.config.rules[case.rule]
	denied := count(hits(data.docker.authz.deny, case.rule)) > 0
	denied == enabled
	allowed := data.docker.authz.allow
	allowed != enabled
}

cases := {
	# ---- ordinary use: allowed under every profile ----
	"ps": {"expect": "allow", "input": read("/v1.41/containers/json")},
	"ping": {"expect": "allow", "input": read("/_ping")},
	"logs": {"expect": "allow", "input": read("/v1.41/containers/abc/logs")},
	"events": {"expect": "allow", "input": read("/events")},
	"image_inspect": {"expect": "allow", "input": read("/v1.41/images/127.0.0.1:5000/busybox:latest/json")},
	"compliant_create": {"expect": "allow", "input": create({}, {})},
	"start": {"expect": "allow", "input": request("POST", "/v1.41/containers/abc/start", null)},
	"volume_create": {"expect": "allow", "input": request("POST", "/v1.41/volumes/create", {"Name": "data"})},
	"network_create": {"expect": "allow", "input": request("POST", "/v1.41/networks/create", {"Name": "net"})},
	"image_remove": {"expect": "allow", "input": request("DELETE", "/v1.41/images/127.0.0.1:5000/busybox:latest", null)},
	"exec": {"expect": "allow", "input": request("POST", "/v1.41/containers/abc/exec", {"Cmd": ["sh"], "User": ""})},
	"compliant_service": {"expect": "allow", "input": service({})},
	"node_list": {"expect": "allow", "input": read("/v1.41/nodes")},
	# ---- always on ----
	"unknown_write": {"expect": "deny", "input": request("POST", "/v1.41/containers/abc/frobnicate", null)},
	"input_without_path": {"expect": "deny", "input": {"Method": "POST", "Body": null}},
	"invisible_create_body": {"expect": "deny", "input": request("POST", "/v1.41/containers/create", null)},
	"charset_json_body": {"expect": "deny", "input": object.union(request("POST", "/v1.41/containers/abc/start", null), {"Headers": {"Content-Type": "application/json; charset=utf-8"}})},
	"ambiguous_keys": {"expect": "deny", "input": request("POST", "/v1.41/containers/create", {"Image": "busybox", "HostConfig": {"Privileged": false}, "hostconfig": {"Privileged": true}})},
	"host_config_on_start": {"expect": "deny", "input": request("POST", "/v1.23/containers/abc/start", {"Privileged": true})},
	# ---- each rule: denied exactly when it is on ----
	"privileged": {"expect": "rule", "rule": "privileged", "input": create({}, {"Privileged": true})},
	"privileged_key_case": {"expect": "rule", "rule": "privileged", "input": request("POST", "/v1.41/containers/create", {"Image": "busybox", "User": "1000:1000", "hostconfig": object.union(compliant_host_config, {"PRIVILEGED": true})})},
	"privileged_no_version": {"expect": "rule", "rule": "privileged", "input": object.union(create({}, {"Privileged": true}), {"PathPlain": "/containers/create"})},
	"privileged_exec": {"expect": "rule", "rule": "privileged", "input": request("POST", "/v1.41/containers/abc/exec", {"Cmd": ["sh"], "Privileged": true})},
	"seccomp_unconfined": {"expect": "rule", "rule": "seccomp_unconfined", "input": create({}, {"SecurityOpt": ["no-new-privileges", "seccomp:unconfined"]})},
	"no_new_privileges": {"expect": "rule", "rule": "no_new_privileges", "input": create({}, {"SecurityOpt": ["no-new-privileges=false"]})},
	"resource_limits": {"expect": "rule", "rule": "resource_limits", "input": create({}, {"PidsLimit": 0})},
	"ports": {"expect": "rule", "rule": "ports", "input": create({}, {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "80"}]}})},
	"root_user": {"expect": "rule", "rule": "root_user", "input": create({"User": "0:0"}, {})},
	"sensitive_env": {"expect": "rule", "rule": "sensitive_env", "input": create({"Env": ["DB_PASSWORD=x"]}, {})},
	"host_namespaces": {"expect": "rule", "rule": "host_namespaces", "input": create({}, {"NetworkMode": "host"})},
	"capabilities": {"expect": "rule", "rule": "capabilities", "input": create({}, {"CapAdd": ["cap_sys_admin"]})},
	"apparmor_unconfined": {"expect": "rule", "rule": "apparmor_unconfined", "input": create({}, {"SecurityOpt": ["no-new-privileges", "apparmor=unconfined"]})},
	"selinux_disabled": {"expect": "rule", "rule": "selinux_disabled", "input": create({}, {"SecurityOpt": ["no-new-privileges", "label:disable"]})},
	"unmasked_paths": {"expect": "rule", "rule": "unmasked_paths", "input": create({}, {"MaskedPaths": [], "ReadonlyPaths": []})},
	"sensitive_mounts": {"expect": "rule", "rule": "sensitive_mounts", "input": create({}, {"Binds": ["/var/run/../run/docker.sock:/sock"]})},
	"devices": {"expect": "rule", "rule": "devices", "input": create({}, {"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}]})},
	"plugin_changes": {"expect": "rule", "rule": "plugin_changes", "input": request("POST", "/v1.41/plugins/opa-docker-authz:latest/disable", null)},
	"swarm_changes": {"expect": "rule", "rule": "swarm_changes", "input": request("POST", "/v1.41/swarm/join", {"RemoteAddrs": ["198.51.100.7:2377"], "JoinToken": "SWMTKN-1-x"})},
	"sensitive_mounts_parent": {"expect": "rule", "rule": "sensitive_mounts", "input": create({}, {"Binds": ["/run:/h"]})},
	"sensitive_mounts_volume_device": {"expect": "rule", "rule": "sensitive_mounts", "input": request("POST", "/v1.41/volumes/create", {"Name": "v", "DriverOpts": {"type": "none", "o": "bind", "device": "etc"}})},
	"seccomp_empty_profile": {"expect": "rule", "rule": "seccomp_unconfined", "input": create({}, {"SecurityOpt": ["no-new-privileges", "seccomp={}"]})},
	"root_user_service": {"expect": "rule", "rule": "root_user", "input": service({"User": "0"})},
	"readonly_rootfs": {"expect": "rule", "rule": "readonly_rootfs", "input": create({}, {"ReadonlyRootfs": false})},
	"runtimes": {"expect": "rule", "rule": "runtimes", "input": create({}, {"Runtime": "io.containerd.runsc.v1"})},
	"runtimes_annotation": {"expect": "rule", "rule": "runtimes", "input": create({}, {"Annotations": {"org.systemd.property.DeviceAllow": "/dev/mem rwm"}})},
	"log_drivers": {"expect": "rule", "rule": "log_drivers", "input": create({}, {"LogConfig": {"Type": "gelf", "Config": {"gelf-address": "udp://127.0.0.1:12201"}}})},
	"log_drivers_service": {"expect": "rule", "rule": "log_drivers", "input": service_log_driver("syslog")},
	"remote_fetch_import": {"expect": "rule", "rule": "remote_fetch", "input": with_query(request("POST", "/v1.41/images/create", null), {"fromSrc": ["169.254.169.254/latest"], "repo": ["x"]})},
	"remote_fetch_build": {"expect": "rule", "rule": "remote_fetch", "input": with_query(request("POST", "/v1.41/build", null), {"remote": ["https://github.com/x/y.git"], "t": ["x"]})},
	"import_body": {"expect": "allow", "input": with_query(request("POST", "/v1.41/images/create", null), {"fromSrc": ["-"], "repo": ["x"], "tag": ["1"]})},
	"build_body": {"expect": "allow", "input": with_query(request("POST", "/v1.41/build", null), {"t": ["x"], "dockerfile": ["Dockerfile"]})},
	"log_driver_default": {"expect": "allow", "input": create({}, {"LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}}})},
}

with_query(req, query) := object.union(req, {"Query": query})

service_log_driver(name) := object.union(service({}), {"Body": object.union(service({}).Body, {"TaskTemplate": object.union(service({}).Body.TaskTemplate, {"LogDriver": {"Name": name}})})})

test_ps if {
	case := cases.ps
	outcome_ok(case) with input as case.input
}

test_ping if {
	case := cases.ping
	outcome_ok(case) with input as case.input
}

test_logs if {
	case := cases.logs
	outcome_ok(case) with input as case.input
}

test_events if {
	case := cases.events
	outcome_ok(case) with input as case.input
}

test_image_inspect if {
	case := cases.image_inspect
	outcome_ok(case) with input as case.input
}

test_compliant_create if {
	case := cases.compliant_create
	outcome_ok(case) with input as case.input
}

test_start if {
	case := cases.start
	outcome_ok(case) with input as case.input
}

test_volume_create if {
	case := cases.volume_create
	outcome_ok(case) with input as case.input
}

test_network_create if {
	case := cases.network_create
	outcome_ok(case) with input as case.input
}

test_image_remove if {
	case := cases.image_remove
	outcome_ok(case) with input as case.input
}

test_exec if {
	case := cases.exec
	outcome_ok(case) with input as case.input
}

test_unknown_write if {
	case := cases.unknown_write
	outcome_ok(case) with input as case.input
}

test_input_without_path if {
	case := cases.input_without_path
	outcome_ok(case) with input as case.input
}

test_invisible_create_body if {
	case := cases.invisible_create_body
	outcome_ok(case) with input as case.input
}

test_charset_json_body if {
	case := cases.charset_json_body
	outcome_ok(case) with input as case.input
}

test_ambiguous_keys if {
	case := cases.ambiguous_keys
	outcome_ok(case) with input as case.input
}

test_host_config_on_start if {
	case := cases.host_config_on_start
	outcome_ok(case) with input as case.input
}

test_privileged if {
	case := cases.privileged
	outcome_ok(case) with input as case.input
}

test_privileged_key_case if {
	case := cases.privileged_key_case
	outcome_ok(case) with input as case.input
}

test_privileged_no_version if {
	case := cases.privileged_no_version
	outcome_ok(case) with input as case.input
}

test_privileged_exec if {
	case := cases.privileged_exec
	outcome_ok(case) with input as case.input
}

test_seccomp_unconfined if {
	case := cases.seccomp_unconfined
	outcome_ok(case) with input as case.input
}

test_no_new_privileges if {
	case := cases.no_new_privileges
	outcome_ok(case) with input as case.input
}

test_resource_limits if {
	case := cases.resource_limits
	outcome_ok(case) with input as case.input
}

test_ports if {
	case := cases.ports
	outcome_ok(case) with input as case.input
}

test_root_user if {
	case := cases.root_user
	outcome_ok(case) with input as case.input
}

test_sensitive_env if {
	case := cases.sensitive_env
	outcome_ok(case) with input as case.input
}

test_host_namespaces if {
	case := cases.host_namespaces
	outcome_ok(case) with input as case.input
}

test_capabilities if {
	case := cases.capabilities
	outcome_ok(case) with input as case.input
}

test_apparmor_unconfined if {
	case := cases.apparmor_unconfined
	outcome_ok(case) with input as case.input
}

test_selinux_disabled if {
	case := cases.selinux_disabled
	outcome_ok(case) with input as case.input
}

test_unmasked_paths if {
	case := cases.unmasked_paths
	outcome_ok(case) with input as case.input
}

test_sensitive_mounts if {
	case := cases.sensitive_mounts
	outcome_ok(case) with input as case.input
}

test_devices if {
	case := cases.devices
	outcome_ok(case) with input as case.input
}

test_plugin_changes if {
	case := cases.plugin_changes
	outcome_ok(case) with input as case.input
}

test_readonly_rootfs if {
	case := cases.readonly_rootfs
	outcome_ok(case) with input as case.input
}

test_compliant_service if {
	case := cases.compliant_service
	outcome_ok(case) with input as case.input
}

test_node_list if {
	case := cases.node_list
	outcome_ok(case) with input as case.input
}

test_swarm_changes if {
	case := cases.swarm_changes
	outcome_ok(case) with input as case.input
}

test_sensitive_mounts_parent if {
	case := cases.sensitive_mounts_parent
	outcome_ok(case) with input as case.input
}

test_sensitive_mounts_volume_device if {
	case := cases.sensitive_mounts_volume_device
	outcome_ok(case) with input as case.input
}

test_seccomp_empty_profile if {
	case := cases.seccomp_empty_profile
	outcome_ok(case) with input as case.input
}

test_root_user_service if {
	case := cases.root_user_service
	outcome_ok(case) with input as case.input
}

test_runtimes if {
	case := cases.runtimes
	outcome_ok(case) with input as case.input
}

test_runtimes_annotation if {
	case := cases.runtimes_annotation
	outcome_ok(case) with input as case.input
}

test_log_drivers if {
	case := cases.log_drivers
	outcome_ok(case) with input as case.input
}

test_log_drivers_service if {
	case := cases.log_drivers_service
	outcome_ok(case) with input as case.input
}

test_remote_fetch_import if {
	case := cases.remote_fetch_import
	outcome_ok(case) with input as case.input
}

test_remote_fetch_build if {
	case := cases.remote_fetch_build
	outcome_ok(case) with input as case.input
}

test_import_body if {
	case := cases.import_body
	outcome_ok(case) with input as case.input
}

test_build_body if {
	case := cases.build_body
	outcome_ok(case) with input as case.input
}

test_log_driver_default if {
	case := cases.log_driver_default
	outcome_ok(case) with input as case.input
}
