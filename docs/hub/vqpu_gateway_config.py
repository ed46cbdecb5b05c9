# vqpu_gateway_config.py: the gateway's quotas (see docs/hub.md). Every knob is a VqpuGateway trait.
c = get_config()  # noqa: F821

# Users in none of the groups below (e.g. a guest account).
c.VqpuGateway.default_limits = {
    "max_shots": 4096,
    "max_qubits": 16,
    "max_circuit_bytes": 50_000,
    "max_queued_per_owner": 2,  # per device
    "submissions_per_minute": 10,
}

# Per hub group. A user in several listed groups gets the most generous value of each limit.
c.VqpuGateway.group_limits = {
    "physics101": {
        "max_shots": 20_000,
        "max_qubits": 20,
        "max_circuit_bytes": 200_000,
        "max_queued_per_owner": 5,
        "submissions_per_minute": 30,
    },
}
