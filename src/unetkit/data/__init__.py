"""Reading labelled folders, turning masks into classes, splitting, batching, synthetic data."""
