"""The sans-IO protocols: DHCPv4 (`dhcp4`), DHCPv6 and router advertisements
(`dhcp6`), and the resolv.conf reader both take DNS from. Bytes in, bytes or
values out: no socket, no process.
"""
