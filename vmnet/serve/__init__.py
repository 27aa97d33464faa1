"""Serving phase 2's protocols on sockets opened inside the pod namespace:
DHCPv4 (`dhcp4`, with the flood `shield`), DHCPv6 and RAs (`dhcp6`,
`endpoint6`), and the `service` that runs them all for a VM.
"""
