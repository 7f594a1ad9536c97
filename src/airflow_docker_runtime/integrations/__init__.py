"""Optional hooks into executors' own start-up."""
