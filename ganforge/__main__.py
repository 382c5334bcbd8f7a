"""`python -m ganforge` is the `ganforge` command (torchrun launches it this way)."""

from ganforge.cli import main

if __name__ == "__main__":
    main()
