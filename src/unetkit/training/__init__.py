"""Fitting a U-Net: the loop, losses, checkpoints and the threshold sweep."""
