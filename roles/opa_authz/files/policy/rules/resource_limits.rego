# Rule resource_limits (docker_authz_require_resource_limits) of the hardening.docker_authz
# policy (docs/policy.md); uses lib.rego. The limits in docker_authz_required_limits on create,
# update and services, and the ceilings docker_authz_max_memory_bytes/max_nano_cpus (0 = none).
package docker.authz

import rego.v1
import data.docker.authz.config

deny contains msg if {
	creating
	config.required_limits[limit]
	not limit_set(limit)
	msg := concat("", ["resource_limits: containers must set a ", limit, " limit (", limit_flags[limit], ")"])
}

limit_flags := {"memory": "--memory", "cpu": "--cpus or --cpu-quota", "pids": "--pids-limit"}

# The fields that carry a limit (create, update).
limit_fields := {"memory": ["memory"], "cpu": ["nanocpus", "cpuquota"], "pids": ["pidslimit"]}

# Memory: the daemon takes the top-level Memory when HostConfig.Memory is 0, so one place
# positive and neither negative.
limit_set(limit) if {
	limit == "memory"
	value := body_levels[_].memory
	is_number(value)
	value > 0
	not negative_memory
}

negative_memory if {
	value := body_levels[_].memory
	is_number(value)
	value < 0
}

limit_set(limit) if {
	limit != "memory"
	name := limit_fields[limit][_]
	value := hc(name)
	is_number(value)
	value > 0
}

# Services: TaskTemplate.Resources.Limits (MemoryBytes, NanoCPUs, Pids).
deny contains msg if {
	service_spec
	config.required_limits[limit]
	not service_limit_set(limit)
	msg := concat("", ["resource_limits: services must set a ", limit, " limit (", service_limit_flags[limit], ")"])
}

service_limit_fields := {"memory": "memorybytes", "cpu": "nanocpus", "pids": "pids"}

service_limit_flags := {"memory": "--limit-memory", "cpu": "--limit-cpu", "pids": "--limit-pids"}

service_limit_set(limit) if {
	value := field(["tasktemplate", "resources", "limits", service_limit_fields[limit]])
	is_number(value)
	value > 0
}

# docker update: -1 (or PidsLimit 0, or MemorySwap -1) removes a limit.
deny contains msg if {
	updating
	config.required_limits[limit]
	limit_removed(limit)
	msg := concat("", ["resource_limits: docker update must not remove the ", limit, " limit"])
}

limit_removed(limit) if {
	name := limit_fields[limit][_]
	value := field([name])
	is_number(value)
	value < 0
}

limit_removed(limit) if {
	limit == "pids"
	field(["pidslimit"]) == 0
}

limit_removed(limit) if {
	limit == "memory"
	field(["memoryswap"]) == -1
}

# Ceilings, for create, update and services (0: none; the guard first, so that a policy-file
# policy without ceilings leaves these rules out).
deny contains msg if {
	config.max_memory_bytes > 0
	creating
	value := body_levels[_].memory
	msg := above_ceiling("memory", value, config.max_memory_bytes, " bytes")
}

deny contains msg if {
	config.max_memory_bytes > 0
	updating
	value := field(["memory"])
	msg := above_ceiling("memory", value, config.max_memory_bytes, " bytes")
}

deny contains msg if {
	config.max_nano_cpus > 0
	value := cpu_values[_]
	msg := above_ceiling("CPU", value, config.max_nano_cpus, " nano-CPUs")
}

deny contains msg if {
	config.max_memory_bytes > 0
	service_spec
	value := field(["tasktemplate", "resources", "limits", "memorybytes"])
	msg := above_ceiling("service memory", value, config.max_memory_bytes, " bytes")
}

deny contains msg if {
	config.max_nano_cpus > 0
	service_spec
	value := field(["tasktemplate", "resources", "limits", "nanocpus"])
	msg := above_ceiling("service CPU", value, config.max_nano_cpus, " nano-CPUs")
}

above_ceiling(what, value, ceiling, unit) := msg if {
	ceiling > 0
	is_number(value)
	value > ceiling
	msg := concat("", ["resource_limits: a ", what, " limit of ", format_int(value, 10), unit, " is above the ceiling of ", format_int(ceiling, 10)])
}

# The CPU limit in nano-CPUs: NanoCpus, or CpuQuota (µs) per CpuPeriod (default 100000 µs).
cpu_values := values if {
	nano := {value | value := cpu_source("nanocpus"); is_number(value)}
	quota := {value | q := cpu_source("cpuquota"); is_number(q); q > 0; value := (q * 1000000000) / cpu_period}
	values := nano | quota
}

default cpu_period := 100000

cpu_period := period if {
	period := cpu_source("cpuperiod")
	is_number(period)
	period > 0
}

cpu_source(name) := value if {
	creating
	value := hc(name)
}

cpu_source(name) := value if {
	updating
	value := field([name])
}

# Create: MemorySwap -1 (unlimited swap) while a memory limit is required, as on update.
deny contains "resource_limits: containers must not have unlimited swap (MemorySwap -1) while a memory limit is required" if {
	creating
	limit := "memory"
	config.required_limits[limit]
	body_levels[_].memoryswap == -1
}

# The host's OOM killer: a negative OomScoreAdj spares the container and kills host processes
# instead; OomKillDisable (cgroup v1) stops the cgroup's own OOM killer.
deny contains "resource_limits: a negative OomScoreAdj (the host's OOM killer would spare the container) is not allowed" if {
	oom_score_adj_values[value]
	is_number(value)
	value < 0
}

deny contains "resource_limits: OomKillDisable is not allowed" if {
	creating
	body_levels[_].oomkilldisable == true
}

oom_score_adj_values contains value if {
	creating
	value := body_levels[_].oomscoreadj
}

oom_score_adj_values contains value if {
	service_spec
	value := field(service_path(["oomscoreadj"]))
}

# CgroupParent (CIS 5.25) places the container's cgroup anywhere in the host's hierarchy,
# outside the daemon's cgroup parent and its limits; also for build containers.
deny contains "resource_limits: a custom CgroupParent (--cgroup-parent) is not allowed (CIS 5.25)" if {
	creating
	value := body_levels[_].cgroupparent
	is_string(value)
	value != ""
}

deny contains "resource_limits: docker build --cgroup-parent is not allowed (CIS 5.25)" if {
	op == "build"
	value := query_values("cgroupparent")[_]
	value != ""
}

# A service sent to API 1.40 or older gets Resources.Limits.Pids 0 (unlimited) from the daemon
# (adjustForAPIVersion), after the policy saw the limit.
deny contains "resource_limits: services must be sent to API 1.41 or later (older paths drop the pids limit)" if {
	service_spec
	limit := "pids"
	config.required_limits[limit]
	api_below(1, 41)
}
