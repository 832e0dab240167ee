"""`python -m calibrate` runs the command line."""

from calibrate.cli import main

main()
