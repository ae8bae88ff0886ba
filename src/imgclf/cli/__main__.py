"""``python -m imgclf.cli``."""

from imgclf.cli import main

main()
