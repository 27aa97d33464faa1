"""The two phases as KubeVirt splits them: `phase1` (privileged: discover,
plan, apply, record), `phase2` (unprivileged: the domain XML) and `leases`
(the DHCP configurations `vmnet dhcp` serves, kept small to import).
"""
