# Overwritten by scripts/build-images.sh with the version being built (1.0.0 or 2.0.0).
__version__ = "0.0.0"
