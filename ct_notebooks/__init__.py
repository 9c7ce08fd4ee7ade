"""ct-notebooks: continuous training with notebooks as the unit of work."""

__version__ = "0.1.0"
