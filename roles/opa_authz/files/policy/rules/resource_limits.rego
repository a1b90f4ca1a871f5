# Rule resource_limits of the hardening.docker_authz policy (docs/policy.md); uses lib.rego.
package docker.authz

import rego.v1
import data.docker.authz.config

# ------------------------------------------------------------------------------------------
# resource_limits (docker_authz_require_resource_limits)
# ------------------------------------------------------------------------------------------
limit_flags := {"memory": "--memory", "cpu": "--cpus or --cpu-quota", "pids": "--pids-limit"}

deny contains msg if {
	creating
	limits := config.required_limits
	limits[limit]
	not limit_set(limit)
	msg := concat("", ["resource_limits: containers must set a ", limit, " limit (", limit_flags[limit], ")"])
}

# Memory: the daemon takes the top-level Memory when HostConfig.Memory is 0.
limit_set(limit) if {
	limit == "memory"
	values := hc_any("memory")
	positive := [v | v := values[_]; is_number(v); v > 0]
	count(positive) > 0
	negative := [v | v := values[_]; is_number(v); v < 0]
	count(negative) == 0
}

limit_set(limit) if {
	limit == "cpu"
	value := hc("nanocpus")
	is_number(value)
	value > 0
}

limit_set(limit) if {
	limit == "cpu"
	value := hc("cpuquota")
	is_number(value)
	value > 0
}

limit_set(limit) if {
	limit == "pids"
	value := hc("pidslimit")
	is_number(value)
	value > 0
}

# Services: TaskTemplate.Resources.Limits (MemoryBytes, NanoCPUs, Pids).
service_limit_fields := {"memory": "memorybytes", "cpu": "nanocpus", "pids": "pids"}

service_limit_flags := {"memory": "--limit-memory", "cpu": "--limit-cpu", "pids": "--limit-pids"}

service_limit(name) := value if {
	value := field(["tasktemplate", "resources", "limits", name])
}

deny contains msg if {
	service_spec
	limits := config.required_limits
	limits[limit]
	not service_limit_set(limit)
	msg := concat("", ["resource_limits: services must set a ", limit, " limit (", service_limit_flags[limit], ")"])
}

service_limit_set(limit) if {
	value := service_limit(service_limit_fields[limit])
	is_number(value)
	value > 0
}

deny contains msg if {
	service_spec
	config.max_memory_bytes > 0
	value := service_limit("memorybytes")
	is_number(value)
	value > config.max_memory_bytes
	msg := concat("", ["resource_limits: a service memory limit of ", format_int(value, 10), " bytes is above the ceiling of ", format_int(config.max_memory_bytes, 10)])
}

deny contains msg if {
	service_spec
	config.max_nano_cpus > 0
	value := service_limit("nanocpus")
	is_number(value)
	value > config.max_nano_cpus
	msg := concat("", ["resource_limits: a service CPU limit of ", format_int(value, 10), " nano-CPUs is above the ceiling of ", format_int(config.max_nano_cpus, 10)])
}

# docker update: -1 (or PidsLimit 0) removes a limit.
deny contains "resource_limits: docker update must not remove the memory limit" if {
	updating
	required_limit("memory")
	memory_removed
}

memory_removed if {
	value := field(["memory"])
	is_number(value)
	value < 0
}

memory_removed if {
	field(["memoryswap"]) == -1
}

deny contains "resource_limits: docker update must not remove the cpu limit" if {
	updating
	required_limit("cpu")
	names := ["nanocpus", "cpuquota"]
	name := names[_]
	value := field([name])
	is_number(value)
	value < 0
}

deny contains "resource_limits: docker update must not remove the pids limit" if {
	updating
	required_limit("pids")
	value := field(["pidslimit"])
	is_number(value)
	value <= 0
}

# Ceilings (0 = none), for create and update.
memory_values := values if {
	creating
	values := hc_any("memory")
}

memory_values := values if {
	updating
	values := {value | value := field(["memory"])}
}

deny contains msg if {
	config.max_memory_bytes > 0
	values := memory_values
	value := values[_]
	is_number(value)
	value > config.max_memory_bytes
	msg := concat("", ["resource_limits: a memory limit of ", format_int(value, 10), " bytes is above the ceiling of ", format_int(config.max_memory_bytes, 10)])
}

cpu_source(name) := value if {
	creating
	value := hc(name)
}

cpu_source(name) := value if {
	updating
	value := field([name])
}

cpu_period := period if {
	period := cpu_source("cpuperiod")
	is_number(period)
	period > 0
}

effective_cpu_period := period if {
	period := cpu_period
}

effective_cpu_period := 100000 if {
	not cpu_period
}

nano_cpus_values := values if {
	nano := {value | value := cpu_source("nanocpus"); is_number(value)}
	quota := {value | q := cpu_source("cpuquota"); is_number(q); q > 0; value := (q * 1000000000) / effective_cpu_period}
	values := nano | quota
}

deny contains msg if {
	config.max_nano_cpus > 0
	values := nano_cpus_values
	value := values[_]
	value > config.max_nano_cpus
	msg := concat("", ["resource_limits: a CPU limit of ", format_int(value, 10), " nano-CPUs is above the ceiling of ", format_int(config.max_nano_cpus, 10)])
}

# A lookup with a variable key: OPA type-checks config.required_limits.cpu against the config
# constant and refuses to compile it when cpu is not required.
required_limit(name) if {
	config.required_limits[name]
}
