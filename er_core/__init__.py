"""ER-Grid's science layer: pure PyTorch and scikit-learn, no Ray, pyarrow or pandas.

Images are float32 NCHW in [0, 1]; every ε and distortion is measured in that space.
"""

__version__ = "0.1.0"
