"""The package's version and defaults that modules share, apart from the package's __init__ (which
imports the public API lazily and so must not be imported back by the modules it reaches)."""

__version__ = "0.1.0"

# Where run folders go by default: output.dir is runs/<config file name>, and `ganforge runs` looks there.
RUNS_FOLDER = "runs"
