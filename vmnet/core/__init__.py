"""Foundations every layer uses: addresses and MACs, the error tree, KubeVirt's link
names, field checks, namespace plumbing that never moves the process, and the
crash-test hook. Imports nothing else of vmnet.
"""
