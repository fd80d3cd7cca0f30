"""Profile loading, location, validation, model and build."""
