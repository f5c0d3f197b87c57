"""Writing and reading models: the pickle-free model file."""
