"""ganforge: train generative adversarial networks from YAML configs."""

__version__ = "0.1.0"
