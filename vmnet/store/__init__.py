"""The cache phase 1 writes and phase 2 and unplug read: typed, versioned JSON
records, written atomically.
"""
