"""Pure planning: the state types phase 1 reads and wants (`state`), the
bindings that turn a discovered pod NIC into a plan and an undo plan
(`bindings`), and the masquerade NAT as data (`nat`). No side effect.
"""
