"""The CycleGAN CT <-> MRI: losses, train state and step, training, translation, quality."""
