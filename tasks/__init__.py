"""law tasks of diffana: thin wrappers around analysis/."""
