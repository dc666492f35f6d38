"""Training data: datasets, clip sampling, augmentation and typed targets; imports formats, config and torch only."""
