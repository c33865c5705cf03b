"""The Fibromyalgia Healing Roadmap: a drip email course engine."""

__version__ = "0.1.0"
