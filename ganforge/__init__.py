"""ganforge: train generative adversarial networks from YAML configs."""

__version__ = "0.1.0"

# Where run folders go by default: output.dir is runs/<config file name>, and `ganforge runs` looks there.
RUNS_FOLDER = "runs"
