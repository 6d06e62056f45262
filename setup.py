"""liverjax: liver segmentation across CT and MRI on CHAOS, in JAX/Flax."""
import setuptools

setuptools.setup(
    name="liverjax",
    version="0.1.0",
    description="Cross-modality (CT <-> MRI) liver segmentation on CHAOS with JAX/Flax.",
    packages=setuptools.find_packages(include=["liverjax", "liverjax.*"]),
    python_requires=">=3.11",
    install_requires=[
        "jax",
        "flax>=0.11",
        "optax>=0.2.5",
        "orbax-checkpoint",
        "pydicom>=2.4",
        "nibabel",  # NIfTI datasets (MSD / nnU-Net layout), liverjax/data/nifti.py
        "highdicom",  # DICOM-SEG output of liverjax.predict (liverjax/reporting/dicom_seg.py)
        "numpy",
        "scipy",
        "opencv-python-headless",
        "absl-py",
        "ml-collections",
        "matplotlib",
        # The input pipeline. The core (reader, preprocessing, models, training)
        # imports and runs without TensorFlow: it falls back to a numpy iterator.
        "tensorflow-cpu",
        "tensorboard",  # TensorBoard scalars/images (tf.summary needs it)
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "pytest-xdist"],  # -n 2: the suite on both cores
        # scripts/benchmark_vs_monai.py only: the PyTorch/MONAI side of the comparison.
        "bench": ["torch", "monai"],
    },
)
