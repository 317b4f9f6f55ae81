"""CNNGen: grammar-generated CNN architectures, trained with energy measurement."""

__version__ = "0.1.0"
