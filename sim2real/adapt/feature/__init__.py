"""Feature-level domain adaptation baselines: DANN, Deep CORAL, multi-kernel MMD (``sim2real adapt --method dann|coral|mmd``)."""
