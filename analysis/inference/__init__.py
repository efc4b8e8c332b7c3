"""pyhf workspaces, fits, limits, scans and impacts."""
