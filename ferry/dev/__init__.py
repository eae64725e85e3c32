"""`ferry dev`: the whole async flow on one machine, for a first look and for local work."""
