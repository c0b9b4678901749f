"""Jobs that span features: the weekly rebuild and its schedule."""
