"""The U-Net liver segmenter: losses, metrics, train state and step, training, evaluation, post-processing, multi-organ labels."""
