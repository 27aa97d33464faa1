"""Making the kernel match a plan: the one applier (`applier`), read-only
discovery of the pod NIC (`discovery`), and one driver per kind of side
effect with stateful fakes (`drivers`).
"""
